// popgate_krb5: server-side MIT krb5 for popgate.
//
//   verifyApReq(apReq, keytab, principals[], rcacheDir) -> Promise<{client, server, mutual, apRep?}>
//   verifyPassword(principal, passwordBuf, keytab, servicePrincipal) -> Promise<true>  (rejects otherwise)
//   checkKeytab(keytab, principals[]) -> Promise<void>
//   GssContext(keytab, principals[], rcacheDir)  (see gss_context.cc)
//   pamAuthenticate(service, user, passwordBuf, accountCheck) -> Promise<{result, stage, code, message}>  (pam.cc)
//   reload()  re-create every thread's krb5_context at its next call (krb5.conf re-read)
//
// Every call runs as Napi::AsyncWorker on the libuv pool, with one cached
// krb5_context per pool thread. Failures reject with an Error carrying
// {code, stage, hint?, krbError?, gssMajor?}; TypeScript maps them to KerberosError.

#include "krb5_common.h"  // first: wraps com_err.h in extern "C"

#include <napi.h>
#include <string.h>

#include <functional>
#include <string>
#include <vector>

#include "gss_context.h"
#include "pam.h"
#include "krb5_common.h"

// MIT 1.18+ has no public call that opens a replay cache by name (the old
// krb5_rc_resolve_full is gone from krb5.h). k5_rc_resolve/k5_rc_close are
// exported from libkrb5 (symbol version krb5_3_MIT) for MIT's own GSS mech,
// which uses them for the documented "rcache" credential-store option. The
// auth context takes ownership of the rcache (krb5_auth_con_free closes it).
// If a future MIT drops them, loading the addon fails loudly (undefined
// symbol), never silently without a replay cache.
extern "C" krb5_error_code k5_rc_resolve(krb5_context context, const char* name, krb5_rcache* rc_out);
extern "C" void k5_rc_close(krb5_context context, krb5_rcache rc);

namespace popgate {
namespace {

class Cleanup {
 public:
  explicit Cleanup(std::function<void()> f) : f_(std::move(f)) {}
  ~Cleanup() { f_(); }
  Cleanup(const Cleanup&) = delete;
  Cleanup& operator=(const Cleanup&) = delete;

 private:
  std::function<void()> f_;
};

std::string RequireString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  }
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must not contain NUL");
  }
  return s;
}

std::vector<std::string> RequireStrings(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i) throw Napi::TypeError::New(info.Env(), std::string(what) + " is required");
  std::vector<std::string> v = StringArray(info[i], what);
  for (const std::string& s : v) {
    if (s.find('\0') != std::string::npos) {
      throw Napi::TypeError::New(info.Env(), std::string(what) + " must not contain NUL");
    }
  }
  return v;
}

std::vector<uint8_t> RequireBuffer(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a Buffer");
  }
  Napi::Buffer<uint8_t> b = info[i].As<Napi::Buffer<uint8_t>>();
  return std::vector<uint8_t>(b.Data(), b.Data() + b.Length());
}

// KRB-ERROR as MIT's krb5_recvauth builds it: error = code - ERROR_TABLE_BASE_krb5,
// KRB_ERR_GENERIC (60) when outside 0..127; the text is the generic com_err
// message (never the extended one, which can name keytab principals).
// KRB5KRB_AP_WRONG_PRINC (internal) is sent as KRB_AP_ERR_NOT_US (35).
std::vector<uint8_t> BuildKrbError(krb5_context ctx, krb5_error_code code, krb5_const_principal server) {
  std::vector<uint8_t> out;
  krb5_error e;
  memset(&e, 0, sizeof(e));
  if (krb5_us_timeofday(ctx, &e.stime, &e.susec) != 0) return out;
  int64_t wire = static_cast<int64_t>(code) - static_cast<int64_t>(ERROR_TABLE_BASE_krb5);
  if (code == KRB5KRB_AP_WRONG_PRINC) wire = kKrbApErrNotUs;
  if (wire < 0 || wire > 127) wire = kKrbErrGeneric;
  e.error = static_cast<krb5_ui_4>(wire);
  krb5_principal unknown = nullptr;
  if (server != nullptr) {
    e.server = const_cast<krb5_principal>(server);
  } else {
    if (krb5_parse_name(ctx, "????", &unknown) != 0) return out;
    e.server = unknown;
  }
  const char* msg = error_message(code);
  std::string text = msg != nullptr ? msg : "";
  e.text.magic = KV5M_DATA;
  e.text.length = static_cast<unsigned int>(text.size() + 1);
  e.text.data = const_cast<char*>(text.c_str());
  krb5_data der;
  memset(&der, 0, sizeof(der));
  if (krb5_mk_error(ctx, &e, &der) == 0) {
    out.assign(reinterpret_cast<uint8_t*>(der.data), reinterpret_cast<uint8_t*>(der.data) + der.length);
    krb5_free_data_contents(ctx, &der);
  }
  if (unknown != nullptr) krb5_free_principal(ctx, unknown);
  return out;
}

// ---------------------------------------------------------------------------
// verifyApReq: krb5_recvauth's server half (rd_req with an explicit server
// principal, explicit keytab and replay cache, then mk_rep for mutual auth).

class VerifyApReqWorker : public PromiseWorker {
 public:
  VerifyApReqWorker(Napi::Env env, std::vector<uint8_t> apReq, std::string keytab, std::vector<std::string> principals,
                    std::string rcacheDir)
      : PromiseWorker(env, "popgate.verifyApReq"),
        apReq_(std::move(apReq)),
        keytab_(std::move(keytab)),
        principals_(std::move(principals)),
        rcacheDir_(std::move(rcacheDir)) {}

 protected:
  void Execute() override {
    krb5_context ctx = nullptr;
    krb5_error_code code = GetThreadContext(&ctx);
    if (code != 0) {
      SetKrbError(&err_, nullptr, code, "init", "krb5_init_context", "config");
      return;
    }
    std::vector<krb5_principal> princs;
    krb5_auth_context ac = nullptr;
    krb5_keytab kt = nullptr;
    krb5_ticket* ticket = nullptr;
    krb5_principal errServer = nullptr;
    Cleanup cleanup([&] {
      if (err_.set && err_.krbError.empty()) err_.krbError = BuildKrbError(ctx, static_cast<krb5_error_code>(err_.code), errServer);
      if (ticket != nullptr) krb5_free_ticket(ctx, ticket);
      if (kt != nullptr) krb5_kt_close(ctx, kt);
      if (ac != nullptr) krb5_auth_con_free(ctx, ac);
      FreePrincipals(ctx, &princs);
    });
    // Errors here are ours (config): the client still gets a generic KRB-ERROR.
    if (!ParsePrincipals(ctx, principals_, &princs, &err_)) return;
    errServer = princs[0];
    if (!CheckRcacheDir(rcacheDir_, &err_)) return;

    // Pick the configured principal the ticket is for. A ticket for anything
    // else is refused here, before the keytab or the replay cache is touched.
    // Undecodable input goes to rd_req anyway so MIT reports its own error.
    int index = -1;
    std::string sname;
    krb5_principal server = princs[0];
    if (MatchTicketServer(ctx, apReq_.data(), apReq_.size(), princs, &index, &sname)) {
      if (index < 0) {
        SetPlainError(&err_, KRB5KRB_AP_WRONG_PRINC, "rd_req",
                      "ticket is for " + sname + ", not a configured service principal", "wrong-principal");
        return;
      }
      server = princs[static_cast<size_t>(index)];
      errServer = server;
    }

    code = krb5_auth_con_init(ctx, &ac);
    if (code != 0) return SetKrbError(&err_, ctx, code, "rd_req", "krb5_auth_con_init");
    krb5_rcache rc = nullptr;
    const std::string rcname = RcacheName(rcacheDir_);
    code = k5_rc_resolve(ctx, rcname.c_str(), &rc);
    if (code != 0) return SetKrbError(&err_, ctx, code, "rcache", "replay cache " + rcname, "config");
    code = krb5_auth_con_setrcache(ctx, ac, rc);
    if (code != 0) {
      k5_rc_close(ctx, rc);
      return SetKrbError(&err_, ctx, code, "rcache", "krb5_auth_con_setrcache", "config");
    }
    code = krb5_kt_resolve(ctx, KeytabName(keytab_).c_str(), &kt);
    if (code != 0) return SetKrbError(&err_, ctx, code, "keytab", "keytab " + keytab_, "config");

    krb5_data in;
    in.magic = KV5M_DATA;
    in.length = static_cast<unsigned int>(apReq_.size());
    in.data = reinterpret_cast<char*>(apReq_.data());
    krb5_flags apOptions = 0;
    code = krb5_rd_req(ctx, &ac, &in, server, kt, &apOptions, &ticket);
    if (code != 0) {
      SetKrbError(&err_, ctx, code, "rd_req", "krb5_rd_req");
      // "No key" because the keytab itself is missing/unreadable is our
      // problem (config), not the client's: look only on this failure path.
      if (code != KRB5KRB_AP_ERR_REPEAT && code != KRB5KRB_AP_ERR_SKEW) {
        krb5_kt_cursor cursor;
        const krb5_error_code kc = krb5_kt_start_seq_get(ctx, kt, &cursor);
        if (kc == 0) {
          krb5_kt_end_seq_get(ctx, kt, &cursor);
        } else {
          SetKrbError(&err_, ctx, kc, "keytab", "cannot read keytab " + keytab_, "config");
        }
      }
      return;
    }

    client_ = UnparseName(ctx, ticket->enc_part2->client);
    server_ = UnparseName(ctx, ticket->server);
    mutual_ = (apOptions & AP_OPTS_MUTUAL_REQUIRED) != 0;
    if (mutual_) {
      krb5_data rep;
      memset(&rep, 0, sizeof(rep));
      code = krb5_mk_rep(ctx, ac, &rep);
      if (code != 0) return SetKrbError(&err_, ctx, code, "mk_rep", "krb5_mk_rep");
      apRep_.assign(reinterpret_cast<uint8_t*>(rep.data), reinterpret_cast<uint8_t*>(rep.data) + rep.length);
      krb5_free_data_contents(ctx, &rep);
    }
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("client", client_);
    o.Set("server", server_);
    o.Set("mutual", mutual_);
    if (mutual_) o.Set("apRep", Napi::Buffer<uint8_t>::Copy(env, apRep_.data(), apRep_.size()));
    return o;
  }

 private:
  std::vector<uint8_t> apReq_;
  std::string keytab_;
  std::vector<std::string> principals_;
  std::string rcacheDir_;
  std::string client_;
  std::string server_;
  bool mutual_ = false;
  std::vector<uint8_t> apRep_;
};

Napi::Value VerifyApReq(const Napi::CallbackInfo& info) {
  auto* w = new VerifyApReqWorker(info.Env(), RequireBuffer(info, 0, "apReq"), RequireString(info, 1, "keytab"),
                                  RequireStrings(info, 2, "servicePrincipals"), RequireString(info, 3, "rcacheDir"));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// ---------------------------------------------------------------------------
// verifyPassword: AS exchange, then krb5_verify_init_creds against our own
// keytab key with ap_req_nofail and the service principal explicit, so a
// missing key, a missing keytab or a rogue KDC can never yield success.
// Resolves true only; every other outcome rejects with {stage, code} and the
// TypeScript side decides "wrong password" (false) vs. a KerberosError.

class VerifyPasswordWorker : public PromiseWorker {
 public:
  VerifyPasswordWorker(Napi::Env env, std::string principal, std::vector<char> password, std::string keytab,
                       std::string service)
      : PromiseWorker(env, "popgate.verifyPassword"),
        principal_(std::move(principal)),
        password_(std::move(password)),
        keytab_(std::move(keytab)),
        service_(std::move(service)) {}

  ~VerifyPasswordWorker() override { Wipe(); }

 protected:
  void Wipe() {
    if (!password_.empty()) explicit_bzero(password_.data(), password_.size());
  }

  void Execute() override {
    krb5_context ctx = nullptr;
    krb5_error_code code = GetThreadContext(&ctx);
    if (code != 0) {
      Wipe();
      SetKrbError(&err_, nullptr, code, "init", "krb5_init_context", "config");
      return;
    }
    krb5_principal server = nullptr;
    krb5_principal client = nullptr;
    krb5_keytab kt = nullptr;
    krb5_get_init_creds_opt* opt = nullptr;
    krb5_creds creds;
    memset(&creds, 0, sizeof(creds));
    bool haveCreds = false;
    Cleanup cleanup([&] {
      Wipe();
      if (haveCreds) krb5_free_cred_contents(ctx, &creds);
      if (opt != nullptr) krb5_get_init_creds_opt_free(ctx, opt);
      if (kt != nullptr) krb5_kt_close(ctx, kt);
      if (client != nullptr) krb5_free_principal(ctx, client);
      if (server != nullptr) krb5_free_principal(ctx, server);
    });

    // Our side first: without a usable key for the service we can never
    // verify, so fail (config) before asking the KDC anything.
    code = krb5_parse_name(ctx, service_.c_str(), &server);
    if (code != 0) return SetKrbError(&err_, ctx, code, "keytab", "service principal \"" + service_ + "\"", "config");
    code = krb5_kt_resolve(ctx, KeytabName(keytab_).c_str(), &kt);
    if (code != 0) return SetKrbError(&err_, ctx, code, "keytab", "keytab " + keytab_, "config");
    krb5_keytab_entry entry;
    code = krb5_kt_get_entry(ctx, kt, server, 0, 0, &entry);
    if (code != 0) return SetKrbError(&err_, ctx, code, "keytab", "keytab " + keytab_ + " for " + service_, "config");
    krb5_free_keytab_entry_contents(ctx, &entry);

    if (password_.size() <= 1) {  // only the NUL: MIT would try to prompt
      return SetPlainError(&err_, KRB5_LIBOS_CANTREADPWD, "as", "empty password", "bad-password");
    }
    code = krb5_parse_name(ctx, principal_.c_str(), &client);
    if (code != 0) return SetKrbError(&err_, ctx, code, "as", "principal", "bad-password");

    code = krb5_get_init_creds_opt_alloc(ctx, &opt);
    if (code != 0) return SetKrbError(&err_, ctx, code, "as", "krb5_get_init_creds_opt_alloc");
    krb5_get_init_creds_opt_set_change_password_prompt(opt, 0);
    krb5_get_init_creds_opt_set_forwardable(opt, 0);
    krb5_get_init_creds_opt_set_proxiable(opt, 0);
    krb5_get_init_creds_opt_set_address_list(opt, nullptr);

    code = krb5_get_init_creds_password(ctx, &creds, client, password_.data(), nullptr, nullptr, 0, nullptr, opt);
    Wipe();
    if (code != 0) return SetKrbError(&err_, ctx, code, "as", "krb5_get_init_creds_password");
    haveCreds = true;

    krb5_verify_init_creds_opt vopt;
    krb5_verify_init_creds_opt_init(&vopt);
    krb5_verify_init_creds_opt_set_ap_req_nofail(&vopt, 1);
    code = krb5_verify_init_creds(ctx, &creds, server, kt, nullptr, &vopt);
    if (code != 0) return SetKrbError(&err_, ctx, code, "verify", "krb5_verify_init_creds");
    ok_ = true;
  }

  Napi::Value Result(Napi::Env env) override { return Napi::Boolean::New(env, ok_); }

 private:
  std::string principal_;
  std::vector<char> password_;  // NUL-terminated copy, wiped after use
  std::string keytab_;
  std::string service_;
  bool ok_ = false;
};

Napi::Value VerifyPassword(const Napi::CallbackInfo& info) {
  std::string principal = RequireString(info, 0, "principal");
  if (info.Length() <= 1 || !info[1].IsBuffer()) throw Napi::TypeError::New(info.Env(), "password must be a Buffer");
  Napi::Buffer<char> pw = info[1].As<Napi::Buffer<char>>();
  if (memchr(pw.Data(), 0, pw.Length()) != nullptr) {
    throw Napi::TypeError::New(info.Env(), "password must not contain NUL");
  }
  std::vector<char> password(pw.Data(), pw.Data() + pw.Length());
  password.push_back('\0');
  auto* w = new VerifyPasswordWorker(info.Env(), std::move(principal), std::move(password),
                                     RequireString(info, 2, "keytab"), RequireString(info, 3, "servicePrincipal"));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// ---------------------------------------------------------------------------
// checkKeytab: readable, and holds a key for each principal (start-up/SIGHUP).

class CheckKeytabWorker : public PromiseWorker {
 public:
  CheckKeytabWorker(Napi::Env env, std::string keytab, std::vector<std::string> principals)
      : PromiseWorker(env, "popgate.checkKeytab"), keytab_(std::move(keytab)), principals_(std::move(principals)) {}

 protected:
  void Execute() override {
    krb5_context ctx = nullptr;
    krb5_error_code code = GetThreadContext(&ctx);
    if (code != 0) return SetKrbError(&err_, nullptr, code, "init", "krb5_init_context", "config");
    krb5_keytab kt = nullptr;
    krb5_principal p = nullptr;
    Cleanup cleanup([&] {
      if (p != nullptr) krb5_free_principal(ctx, p);
      if (kt != nullptr) krb5_kt_close(ctx, kt);
    });
    code = krb5_kt_resolve(ctx, KeytabName(keytab_).c_str(), &kt);
    if (code != 0) return SetKrbError(&err_, ctx, code, "keytab", "keytab " + keytab_, "config");
    krb5_kt_cursor cursor;
    code = krb5_kt_start_seq_get(ctx, kt, &cursor);
    if (code != 0) return SetKrbError(&err_, ctx, code, "keytab", "cannot read keytab " + keytab_, "config");
    krb5_kt_end_seq_get(ctx, kt, &cursor);

    std::string missing;
    for (const std::string& name : principals_) {
      code = krb5_parse_name(ctx, name.c_str(), &p);
      if (code != 0) return SetKrbError(&err_, ctx, code, "keytab", "service principal \"" + name + "\"", "config");
      krb5_keytab_entry entry;
      code = krb5_kt_get_entry(ctx, kt, p, 0, 0, &entry);
      if (code == 0) {
        krb5_free_keytab_entry_contents(ctx, &entry);
      } else if (code == KRB5_KT_NOTFOUND) {
        missing += (missing.empty() ? "" : ", ") + UnparseName(ctx, p);
      } else {
        return SetKrbError(&err_, ctx, code, "keytab", "keytab " + keytab_ + " for " + name, "config");
      }
      krb5_free_principal(ctx, p);
      p = nullptr;
    }
    if (!missing.empty()) {
      SetPlainError(&err_, KRB5_KT_NOTFOUND, "keytab", "keytab " + keytab_ + " has no key for " + missing, "config");
    }
  }

  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  std::string keytab_;
  std::vector<std::string> principals_;
};

Napi::Value CheckKeytab(const Napi::CallbackInfo& info) {
  auto* w = new CheckKeytabWorker(info.Env(), RequireString(info, 0, "keytab"),
                                  RequireStrings(info, 1, "principals"));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value Reload(const Napi::CallbackInfo& info) {
  FlushThreadContexts();
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("verifyApReq", Napi::Function::New(env, VerifyApReq, "verifyApReq"));
  exports.Set("verifyPassword", Napi::Function::New(env, VerifyPassword, "verifyPassword"));
  exports.Set("checkKeytab", Napi::Function::New(env, CheckKeytab, "checkKeytab"));
  exports.Set("pamAuthenticate", Napi::Function::New(env, PamAuthenticate, "pamAuthenticate"));
  exports.Set("reload", Napi::Function::New(env, Reload, "reload"));
  exports.Set("GssContext", GssContext::Init(env));
  return exports;
}

}  // namespace
}  // namespace popgate

static Napi::Object InitPopgateKrb5(Napi::Env env, Napi::Object exports) { return popgate::Init(env, exports); }

NODE_API_MODULE(popgate_krb5, InitPopgateKrb5)
