// pamAuthenticate: a password check through Linux-PAM, for the `pam` verifier.
//
//   pamAuthenticate(service, user, passwordBuf, accountCheck[, rhost])
//     -> Promise<{ result: 'ok'|'bad-password'|'unknown-user'|'disabled'|'unavailable',
//                  stage: 'start'|'auth'|'account', code: number, message: string }>
//
// Runs as a PromiseWorker on the libuv pool (PAM modules may block on the
// network or a helper process: the TypeScript gate caps and times them out).
// It never rejects for a PAM outcome, only for bad arguments. The
// conversation answers the password prompt (PAM_PROMPT_ECHO_OFF) and nothing
// else: any other prompt (a username, an OTP, "new password") fails the
// conversation, so a stack that needs more than a password reports
// `unavailable` instead of hanging. The password copy is wiped after use.
// `rhost` (the client's address) is set as PAM_RHOST, so modules that look
// at the remote host (pam_faillock, pam_access, pam_succeed_if rhost) see it.

#include "pam.h"

#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

namespace popgate {
namespace {

struct ConvData {
  const std::vector<char>* password;  // NUL-terminated
};

int Converse(int n, const struct pam_message** msgs, struct pam_response** out, void* appdata) {
  if (n <= 0 || n > PAM_MAX_NUM_MSG || out == nullptr || appdata == nullptr) return PAM_CONV_ERR;
  const auto* data = static_cast<const ConvData*>(appdata);
  auto* resp = static_cast<struct pam_response*>(calloc(static_cast<size_t>(n), sizeof(struct pam_response)));
  if (resp == nullptr) return PAM_BUF_ERR;
  for (int i = 0; i < n; i++) {
    switch (msgs[i]->msg_style) {
      case PAM_PROMPT_ECHO_OFF: {
        char* copy = strdup(data->password->data());
        if (copy == nullptr) goto fail;
        resp[i].resp = copy;
        break;
      }
      case PAM_TEXT_INFO:
      case PAM_ERROR_MSG:
        break;  // not a question: nothing to answer
      default:  // PAM_PROMPT_ECHO_ON (user name, OTP, ...) and anything unknown
        goto fail;
    }
  }
  *out = resp;
  return PAM_SUCCESS;
fail:
  for (int i = 0; i < n; i++) {
    if (resp[i].resp != nullptr) {
      explicit_bzero(resp[i].resp, strlen(resp[i].resp));
      free(resp[i].resp);
    }
  }
  free(resp);
  return PAM_CONV_ERR;
}

const char* AuthResult(int rc) {
  switch (rc) {
    case PAM_SUCCESS:
      return "ok";
    case PAM_AUTH_ERR:
    case PAM_CRED_INSUFFICIENT:
    case PAM_MAXTRIES:
      return "bad-password";
    case PAM_USER_UNKNOWN:
      return "unknown-user";
    case PAM_ACCT_EXPIRED:
    case PAM_NEW_AUTHTOK_REQD:
    case PAM_PERM_DENIED:
      return "disabled";
    default:  // PAM_AUTHINFO_UNAVAIL, PAM_SYSTEM_ERR, PAM_BUF_ERR, PAM_CONV_ERR, PAM_ABORT, ...
      return "unavailable";
  }
}

const char* AccountResult(int rc) {
  switch (rc) {
    case PAM_SUCCESS:
      return "ok";
    case PAM_USER_UNKNOWN:
      return "unknown-user";
    case PAM_ACCT_EXPIRED:
    case PAM_NEW_AUTHTOK_REQD:
    case PAM_PERM_DENIED:
    case PAM_AUTH_ERR:  // pam_deny, pam_listfile, pam_time refuse with it in the account stack
      return "disabled";
    default:
      return "unavailable";
  }
}

class PamAuthenticateWorker : public PromiseWorker {
 public:
  PamAuthenticateWorker(Napi::Env env, std::string service, std::string user, std::vector<char> password,
                        bool accountCheck, std::string rhost)
      : PromiseWorker(env, "popgate.pamAuthenticate"),
        service_(std::move(service)),
        user_(std::move(user)),
        password_(std::move(password)),
        accountCheck_(accountCheck),
        rhost_(std::move(rhost)) {}

  ~PamAuthenticateWorker() override { Wipe(); }

 protected:
  void Wipe() {
    if (!password_.empty()) explicit_bzero(password_.data(), password_.size());
  }

  void Execute() override {
    if (password_.size() <= 1) {  // only the NUL; the TypeScript side refuses this first
      Wipe();
      Set("bad-password", "auth", PAM_AUTH_ERR, "empty password");
      return;
    }
    ConvData data{&password_};
    struct pam_conv conv = {Converse, &data};
    pam_handle_t* pamh = nullptr;
    int rc = pam_start(service_.c_str(), user_.c_str(), &conv, &pamh);
    if (rc != PAM_SUCCESS) {
      Wipe();
      Set("unavailable", "start", rc, pamh != nullptr ? pam_strerror(pamh, rc) : "pam_start failed");
      if (pamh != nullptr) pam_end(pamh, rc);
      return;
    }
    if (!rhost_.empty()) {
      rc = pam_set_item(pamh, PAM_RHOST, rhost_.c_str());
      if (rc != PAM_SUCCESS) {
        Wipe();
        Set("unavailable", "start", rc, pam_strerror(pamh, rc));
        pam_end(pamh, rc);
        return;
      }
    }
    rc = pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    Wipe();
    if (rc != PAM_SUCCESS) {
      Set(AuthResult(rc), "auth", rc, pam_strerror(pamh, rc));
    } else if (accountCheck_) {
      rc = pam_acct_mgmt(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
      Set(AccountResult(rc), "account", rc, pam_strerror(pamh, rc));
    } else {
      Set("ok", "auth", rc, pam_strerror(pamh, rc));
    }
    // pam_end frees the handle's items (PAM_AUTHTOK included; Linux-PAM overwrites it).
    pam_end(pamh, rc);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("result", result_);
    o.Set("stage", stage_);
    o.Set("code", code_);
    o.Set("message", message_);
    return o;
  }

 private:
  void Set(const char* result, const char* stage, int code, const char* message) {
    result_ = result;
    stage_ = stage;
    code_ = code;
    message_ = message != nullptr ? message : "";
  }

  std::string service_;
  std::string user_;
  std::vector<char> password_;  // NUL-terminated copy, wiped after pam_authenticate
  bool accountCheck_;
  std::string rhost_;  // empty: PAM_RHOST left unset
  std::string result_ = "unavailable";
  std::string stage_ = "start";
  int code_ = 0;
  std::string message_;
};

std::string PamString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  }
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.empty() || s.find('\0') != std::string::npos) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a non-empty string without NUL");
  }
  return s;
}

}  // namespace

Napi::Value PamAuthenticate(const Napi::CallbackInfo& info) {
  std::string service = PamString(info, 0, "service");
  std::string user = PamString(info, 1, "user");
  if (info.Length() <= 2 || !info[2].IsBuffer()) throw Napi::TypeError::New(info.Env(), "password must be a Buffer");
  Napi::Buffer<char> pw = info[2].As<Napi::Buffer<char>>();
  if (memchr(pw.Data(), 0, pw.Length()) != nullptr) {
    throw Napi::TypeError::New(info.Env(), "password must not contain NUL");
  }
  if (info.Length() <= 3 || !info[3].IsBoolean()) throw Napi::TypeError::New(info.Env(), "accountCheck must be a boolean");
  const bool accountCheck = info[3].As<Napi::Boolean>().Value();
  std::string rhost;
  if (info.Length() > 4 && !info[4].IsUndefined()) rhost = PamString(info, 4, "rhost");
  std::vector<char> password(pw.Data(), pw.Data() + pw.Length());
  password.push_back('\0');
  auto* w = new PamAuthenticateWorker(info.Env(), std::move(service), std::move(user), std::move(password), accountCheck,
                                       std::move(rhost));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace popgate
