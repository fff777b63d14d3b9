// Shared helpers for popgate's MIT krb5 addon: per-thread krb5 contexts,
// error records, promise-returning async workers and a tiny DER reader used
// to find the ticket's server principal before anything touches a keytab or
// the replay cache.
#pragma once

#include <napi.h>

// Debian's com_err.h (e2fsprogs) has no extern "C" guard; krb5.h includes it.
extern "C" {
#include <et/com_err.h>
}
#include <krb5/krb5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace popgate {

// KRB_ERR_GENERIC (60) is internal to MIT's headers: define it ourselves.
constexpr int32_t kKrbErrGeneric = 60;
// KRB_AP_ERR_NOT_US (35), sent for a ticket that is not for a configured principal.
constexpr int32_t kKrbApErrNotUs = 35;

// Replay cache file inside the configured directory (MIT "file2" type).
std::string RcacheName(const std::string& dir);

// Returns this thread's cached krb5_context, creating it on first use or after
// FlushThreadContexts() (SIGHUP: re-read krb5.conf). Never shared across threads.
krb5_error_code GetThreadContext(krb5_context* out);
// Bumps the generation: every thread re-creates its context at its next call.
void FlushThreadContexts();

// What a failed call reports to JavaScript. `hint` names a KerberosFailure when
// the addon knows it for sure (e.g. "config" for a missing rcache directory);
// otherwise TypeScript classifies by `code` and `stage`.
struct NativeError {
  bool set = false;
  int64_t code = 0;        // krb5 error code, errno, or GSS minor status
  uint32_t gssMajor = 0;   // GSS major status, when a GSS call failed
  std::string message;     // for logs (may name keytab principals)
  std::string hint;        // "", or a KerberosFailure kind
  std::string stage;       // which step failed ("rd_req", "as", "verify", ...)
  std::vector<uint8_t> krbError;  // DER KRB-ERROR for a KPOP client, if built
};

void SetKrbError(NativeError* err, krb5_context ctx, krb5_error_code code, const std::string& stage,
                 const std::string& prefix, const std::string& hint = "");
void SetPlainError(NativeError* err, int64_t code, const std::string& stage, const std::string& message,
                   const std::string& hint);
Napi::Error MakeJsError(Napi::Env env, const NativeError& err);

// Checks the replay cache directory exists, is a directory and is writable.
bool CheckRcacheDir(const std::string& dir, NativeError* err);

// "/path" -> "FILE:/path"; other names (already typed, e.g. "FILE:...") unchanged.
std::string KeytabName(const std::string& keytab);

// Base for promise-returning work on the libuv pool. Execute() must only touch
// copied C++ data; the result or `err_` is turned into JS values in OnOK().
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name);
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void OnOK() override;
  void OnError(const Napi::Error& e) override;
  virtual Napi::Value Result(Napi::Env env) = 0;
  // Called on the JS thread after the promise is settled (e.g. release a busy flag).
  virtual void Done() {}

  NativeError err_;
  Napi::Promise::Deferred deferred_;
};

// Minimal DER reader (definite lengths, single-byte tags, bounds-checked).
struct Tlv {
  uint8_t tag = 0;
  const uint8_t* value = nullptr;
  size_t length = 0;
  size_t total = 0;  // header + value
};
bool ReadTlv(const uint8_t* p, size_t n, Tlv* out);

// Finds the Ticket (0x61...) inside a DER AP-REQ (0x6e...). Returns false if the
// bytes are not shaped like an AP-REQ.
bool FindTicketInApReq(const uint8_t* p, size_t n, krb5_data* ticket);

// Decodes the ticket inside an AP-REQ and returns the index of the configured
// principal it is for (-1 if none), with the ticket's server name in *sname.
// Returns false when the AP-REQ/ticket cannot be decoded.
bool MatchTicketServer(krb5_context ctx, const uint8_t* apreq, size_t n,
                       const std::vector<krb5_principal>& principals, int* index, std::string* sname);

// Parses each configured principal (default realm applied). On failure sets err
// (hint "config") and returns false; parsed principals are appended to out.
bool ParsePrincipals(krb5_context ctx, const std::vector<std::string>& names, std::vector<krb5_principal>* out,
                     NativeError* err);
void FreePrincipals(krb5_context ctx, std::vector<krb5_principal>* princs);

std::string UnparseName(krb5_context ctx, krb5_const_principal p);

// Reads a JS string[] argument.
std::vector<std::string> StringArray(const Napi::Value& v, const char* what);

}  // namespace popgate
