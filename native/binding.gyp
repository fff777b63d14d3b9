{
  # popgate's MIT krb5 addon: server-side Kerberos (KPOP rd_req/mk_rep,
  # GSS-API acceptor, verified password check). Build: npm run build:native
  # (node-gyp rebuild --directory native). Needs libkrb5-dev, libpam0g-dev, python3, make, g++.
  # Also the PAM password check (src/pam.cc, linked with -lpam).
  'targets': [
    {
      'target_name': 'popgate_krb5',
      'sources': [
        'src/addon.cc',
        'src/krb5_common.cc',
        'src/gss_context.cc',
        'src/pam.cc',
      ],
      # node-addon-api headers only (its gyp targets would make gyp write
      # makefiles into native/node_modules/); C++ exceptions on, as except.gypi does.
      'include_dirs': [
        "<!(node -p \"require('node-addon-api').include_dir\")",
      ],
      'defines': [
        'NAPI_VERSION=8',
        'NAPI_CPP_EXCEPTIONS',
      ],
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions'],
      'cflags_cc': [
        '-std=c++17',
        '-Wall',
        '-Wextra',
        '-Wno-unused-parameter',
        '<!@(pkg-config --cflags krb5-gssapi krb5)',
      ],
      'libraries': [
        '<!@(pkg-config --libs krb5-gssapi krb5)',
        '-lpam',
      ],
    },
  ],
}
