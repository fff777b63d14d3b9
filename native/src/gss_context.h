// One server-side GSS-API security context (Kerberos V5 mechanism only).
#pragma once

#include <napi.h>

#include <gssapi/gssapi.h>

#include <string>
#include <vector>

namespace popgate {

class GssContext : public Napi::ObjectWrap<GssContext> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit GssContext(const Napi::CallbackInfo& info);
  ~GssContext() override;

  // Worker-visible state. Only touched by the JS thread while !busy_, and only
  // by the single worker that set busy_ while it runs.
  std::string keytab_;
  std::vector<std::string> principals_;
  std::string rcacheDir_;
  gss_ctx_id_t ctx_ = GSS_C_NO_CONTEXT;
  gss_cred_id_t cred_ = GSS_C_NO_CREDENTIAL;
  bool busy_ = false;
  bool disposed_ = false;
  bool complete_ = false;
  bool failed_ = false;
  std::string target_;  // the configured principal the client's ticket is for

  void Release();

 private:
  Napi::Value StepJs(const Napi::CallbackInfo& info);
  Napi::Value WrapJs(const Napi::CallbackInfo& info);
  Napi::Value UnwrapJs(const Napi::CallbackInfo& info);
  Napi::Value DisposeJs(const Napi::CallbackInfo& info);
};

}  // namespace popgate
