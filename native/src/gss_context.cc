// Server-side GSS-API (RFC 4752 SASL GSSAPI) for popgate: Kerberos V5
// mechanism only (OID 1.2.840.113554.1.2.2), SPNEGO and others refused.
//
// The acceptor credential is acquired lazily in the first step(), on a pool
// thread, with gss_acquire_cred_from and an explicit credential store:
//   {"keytab": <keytab>, "rcache": "file2:<rcacheDir>/popgate.rcache2"}
// for exactly ONE name: the configured principal the client's ticket is for
// (found by decoding the ticket's server name before anything else). A ticket
// for a principal that is not configured is refused without touching the
// keytab or the replay cache; after the exchange the context's target name is
// checked again against that principal.

#include "gss_context.h"

#include "krb5_common.h"  // first: wraps com_err.h in extern "C"

#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <string.h>

namespace popgate {
namespace {

// DER body of 1.2.840.113554.1.2.2 (Kerberos V5) and 1.3.6.1.5.5.2 (SPNEGO).
const uint8_t kKrb5Oid[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02};
const uint8_t kSpnegoOid[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x02};

bool IsKrb5Mech(gss_const_OID oid) {
  return oid != GSS_C_NO_OID && oid->length == sizeof(kKrb5Oid) && memcmp(oid->elements, kKrb5Oid, sizeof(kKrb5Oid)) == 0;
}

std::string GssMessage(OM_uint32 major, OM_uint32 minor) {
  std::string out;
  OM_uint32 msgCtx = 0;
  OM_uint32 min = 0;
  gss_buffer_desc buf = GSS_C_EMPTY_BUFFER;
  do {
    if (gss_display_status(&min, major, GSS_C_GSS_CODE, GSS_C_NO_OID, &msgCtx, &buf) != GSS_S_COMPLETE) break;
    if (!out.empty()) out += "; ";
    out.append(static_cast<const char*>(buf.value), buf.length);
    gss_release_buffer(&min, &buf);
  } while (msgCtx != 0);
  if (minor != 0) {
    msgCtx = 0;
    do {
      if (gss_display_status(&min, minor, GSS_C_MECH_CODE, gss_mech_krb5, &msgCtx, &buf) != GSS_S_COMPLETE) break;
      out += ": ";
      out.append(static_cast<const char*>(buf.value), buf.length);
      gss_release_buffer(&min, &buf);
    } while (msgCtx != 0);
  }
  return out;
}

void SetGssError(NativeError* err, OM_uint32 major, OM_uint32 minor, const std::string& stage,
                 const std::string& prefix, const std::string& hint = "") {
  err->set = true;
  err->code = static_cast<int32_t>(minor);  // krb5 error codes are negative int32
  err->gssMajor = major;
  err->stage = stage;
  err->hint = hint;
  err->message = prefix + ": " + GssMessage(major, minor);
}

std::string DisplayName(gss_name_t name) {
  OM_uint32 minor = 0;
  gss_buffer_desc buf = GSS_C_EMPTY_BUFFER;
  if (gss_display_name(&minor, name, &buf, nullptr) != GSS_S_COMPLETE) return "";
  std::string s(static_cast<const char*>(buf.value), buf.length);
  gss_release_buffer(&minor, &buf);
  return s;
}

// Finds the AP-REQ inside an RFC 2743 initial context token for the krb5 mech:
// 60 len 06 09 <krb5 oid> 01 00 <AP-REQ>. Sets a "bad-token" error otherwise.
bool InitialTokenApReq(const std::vector<uint8_t>& token, const uint8_t** apreq, size_t* n, NativeError* err) {
  Tlv outer;
  Tlv oid;
  if (!ReadTlv(token.data(), token.size(), &outer) || outer.tag != 0x60 ||
      !ReadTlv(outer.value, outer.length, &oid) || oid.tag != 0x06) {
    SetPlainError(err, GSS_S_DEFECTIVE_TOKEN, "accept", "not a GSS-API initial context token", "bad-token");
    return false;
  }
  if (oid.length == sizeof(kSpnegoOid) && memcmp(oid.value, kSpnegoOid, sizeof(kSpnegoOid)) == 0) {
    SetPlainError(err, GSS_S_BAD_MECH, "accept", "SPNEGO refused: only the Kerberos V5 mechanism is accepted",
                  "bad-token");
    return false;
  }
  if (oid.length != sizeof(kKrb5Oid) || memcmp(oid.value, kKrb5Oid, sizeof(kKrb5Oid)) != 0) {
    SetPlainError(err, GSS_S_BAD_MECH, "accept", "mechanism refused: only Kerberos V5 (1.2.840.113554.1.2.2) is accepted",
                  "bad-token");
    return false;
  }
  const uint8_t* rest = oid.value + oid.length;
  const size_t left = outer.length - oid.total;
  if (left < 2 || rest[0] != 0x01 || rest[1] != 0x00) {
    SetPlainError(err, GSS_S_DEFECTIVE_TOKEN, "accept", "Kerberos V5 GSS token is not an AP-REQ", "bad-token");
    return false;
  }
  *apreq = rest + 2;
  *n = left - 2;
  return true;
}

// Base for the three GSS operations: keeps the JS object alive while the work
// runs and clears the busy flag (releasing a context disposed meanwhile).
class GssWorker : public PromiseWorker {
 public:
  GssWorker(Napi::Env env, const char* name, GssContext* gc, Napi::Object self, std::vector<uint8_t> input)
      : PromiseWorker(env, name), gc_(gc), input_(std::move(input)) {
    self_ = Napi::Persistent(self);
    gc_->busy_ = true;
  }

 protected:
  void Done() override {
    gc_->busy_ = false;
    if (gc_->disposed_) gc_->Release();
    self_.Reset();
  }

  GssContext* gc_;
  Napi::ObjectReference self_;
  std::vector<uint8_t> input_;
  std::vector<uint8_t> output_;
};

class StepWorker : public GssWorker {
 public:
  using GssWorker::GssWorker;

 protected:
  void Execute() override {
    if (gc_->failed_) return SetPlainError(&err_, GSS_S_NO_CONTEXT, "accept", "GSS context already failed", "other");
    if (gc_->complete_) return SetPlainError(&err_, GSS_S_FAILURE, "accept", "GSS context already complete", "other");
    if (gc_->ctx_ == GSS_C_NO_CONTEXT && !Prepare()) {
      gc_->failed_ = true;
      return;
    }
    OM_uint32 minor = 0;
    gss_buffer_desc in;
    in.length = input_.size();
    in.value = input_.data();
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    gss_name_t src = GSS_C_NO_NAME;
    gss_OID mech = GSS_C_NO_OID;
    OM_uint32 flags = 0;
    OM_uint32 major = gss_accept_sec_context(&minor, &gc_->ctx_, gc_->cred_, &in, GSS_C_NO_CHANNEL_BINDINGS, &src,
                                             &mech, &out, &flags, nullptr, nullptr);
    OM_uint32 min2 = 0;
    if (out.length > 0) {
      output_.assign(static_cast<uint8_t*>(out.value), static_cast<uint8_t*>(out.value) + out.length);
    }
    gss_release_buffer(&min2, &out);
    if (GSS_ERROR(major)) {
      const OM_uint32 routine = GSS_ROUTINE_ERROR(major);
      std::string hint;
      if (routine == GSS_S_DEFECTIVE_TOKEN || routine == GSS_S_BAD_MECH || routine == GSS_S_BAD_SIG) hint = "bad-token";
      SetGssError(&err_, major, minor, "accept", "gss_accept_sec_context", hint);
      if (src != GSS_C_NO_NAME) gss_release_name(&min2, &src);
      gc_->failed_ = true;
      output_.clear();
      return;
    }
    if (major & GSS_S_CONTINUE_NEEDED) {
      if (src != GSS_C_NO_NAME) gss_release_name(&min2, &src);
      return;
    }
    // Complete: the mechanism must be krb5 and the target the principal we chose.
    if (!IsKrb5Mech(mech)) {
      if (src != GSS_C_NO_NAME) gss_release_name(&min2, &src);
      gc_->failed_ = true;
      return SetPlainError(&err_, GSS_S_BAD_MECH, "accept", "context established with a mechanism other than krb5",
                           "bad-token");
    }
    client_ = DisplayName(src);
    gss_release_name(&min2, &src);
    gss_name_t targ = GSS_C_NO_NAME;
    if (gss_inquire_context(&min2, gc_->ctx_, nullptr, &targ, nullptr, nullptr, nullptr, nullptr, nullptr) !=
        GSS_S_COMPLETE) {
      gc_->failed_ = true;
      return SetPlainError(&err_, GSS_S_FAILURE, "accept", "gss_inquire_context failed", "other");
    }
    const std::string target = DisplayName(targ);
    gss_release_name(&min2, &targ);
    if (client_.empty() || target != gc_->target_) {
      gc_->failed_ = true;
      return SetPlainError(&err_, KRB5KRB_AP_WRONG_PRINC, "accept",
                           "context target " + target + " is not the configured principal " + gc_->target_,
                           "wrong-principal");
    }
    done_ = true;
    gc_->complete_ = true;
  }

  // First token: refuse non-krb5 mechanisms, find the configured principal the
  // ticket is for, and acquire an acceptor credential for exactly that name.
  bool Prepare() {
    krb5_context kctx = nullptr;
    krb5_error_code code = GetThreadContext(&kctx);
    if (code != 0) {
      SetKrbError(&err_, nullptr, code, "init", "krb5_init_context", "config");
      return false;
    }
    std::vector<krb5_principal> princs;
    bool ok = ParsePrincipals(kctx, gc_->principals_, &princs, &err_) && CheckRcacheDir(gc_->rcacheDir_, &err_);
    const uint8_t* apreq = nullptr;
    size_t n = 0;
    if (ok) ok = InitialTokenApReq(input_, &apreq, &n, &err_);
    int index = -1;
    std::string sname;
    if (ok && !MatchTicketServer(kctx, apreq, n, princs, &index, &sname)) {
      SetPlainError(&err_, KRB5KRB_AP_ERR_MSG_TYPE, "accept", "cannot decode the AP-REQ in the GSS token", "bad-token");
      ok = false;
    }
    if (ok && index < 0) {
      SetPlainError(&err_, KRB5KRB_AP_WRONG_PRINC, "accept",
                    "ticket is for " + sname + ", not a configured service principal", "wrong-principal");
      ok = false;
    }
    if (ok) gc_->target_ = UnparseName(kctx, princs[static_cast<size_t>(index)]);
    FreePrincipals(kctx, &princs);
    if (!ok) return false;

    OM_uint32 minor = 0;
    OM_uint32 min2 = 0;
    gss_buffer_desc nameBuf;
    nameBuf.length = gc_->target_.size();
    nameBuf.value = const_cast<char*>(gc_->target_.data());
    gss_name_t name = GSS_C_NO_NAME;
    OM_uint32 major = gss_import_name(&minor, &nameBuf, GSS_KRB5_NT_PRINCIPAL_NAME, &name);
    if (GSS_ERROR(major)) {
      SetGssError(&err_, major, minor, "acquire", "gss_import_name", "config");
      return false;
    }
    const std::string rcname = RcacheName(gc_->rcacheDir_);
    gss_key_value_element_desc elements[2];
    elements[0].key = "keytab";
    elements[0].value = gc_->keytab_.c_str();
    elements[1].key = "rcache";
    elements[1].value = rcname.c_str();
    gss_key_value_set_desc store;
    store.count = 2;
    store.elements = elements;
    gss_OID_set_desc mechs;
    mechs.count = 1;
    mechs.elements = const_cast<gss_OID>(gss_mech_krb5);
    major = gss_acquire_cred_from(&minor, name, GSS_C_INDEFINITE, &mechs, GSS_C_ACCEPT, &store, &gc_->cred_, nullptr,
                                  nullptr);
    gss_release_name(&min2, &name);
    if (GSS_ERROR(major)) {
      SetGssError(&err_, major, minor, "acquire", "gss_acquire_cred_from (keytab " + gc_->keytab_ + ")", "config");
      gc_->cred_ = GSS_C_NO_CREDENTIAL;
      return false;
    }
    return true;
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("done", done_);
    o.Set("output", Napi::Buffer<uint8_t>::Copy(env, output_.data(), output_.size()));
    if (done_) o.Set("client", client_);
    return o;
  }

 private:
  bool done_ = false;
  std::string client_;
};

class WrapWorker : public GssWorker {
 public:
  WrapWorker(Napi::Env env, GssContext* gc, Napi::Object self, std::vector<uint8_t> input, bool unwrap)
      : GssWorker(env, unwrap ? "popgate.gssUnwrap" : "popgate.gssWrap", gc, self, std::move(input)),
        unwrap_(unwrap) {}

 protected:
  void Execute() override {
    OM_uint32 minor = 0;
    OM_uint32 min2 = 0;
    gss_buffer_desc in;
    in.length = input_.size();
    in.value = input_.data();
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    OM_uint32 major;
    int conf = 0;
    if (unwrap_) {
      gss_qop_t qop = 0;
      major = gss_unwrap(&minor, gc_->ctx_, &in, &out, &conf, &qop);
    } else {
      major = gss_wrap(&minor, gc_->ctx_, 0 /* integrity only */, GSS_C_QOP_DEFAULT, &in, &conf, &out);
    }
    if (GSS_ERROR(major)) {
      const OM_uint32 routine = GSS_ROUTINE_ERROR(major);
      std::string hint;
      if (unwrap_ && (routine == GSS_S_DEFECTIVE_TOKEN || routine == GSS_S_BAD_SIG)) hint = "bad-token";
      SetGssError(&err_, major, minor, unwrap_ ? "unwrap" : "wrap", unwrap_ ? "gss_unwrap" : "gss_wrap", hint);
    } else if (out.length > 0) {
      output_.assign(static_cast<uint8_t*>(out.value), static_cast<uint8_t*>(out.value) + out.length);
    }
    gss_release_buffer(&min2, &out);
  }

  Napi::Value Result(Napi::Env env) override {
    return Napi::Buffer<uint8_t>::Copy(env, output_.data(), output_.size());
  }

 private:
  bool unwrap_;
};

Napi::Value RejectNow(Napi::Env env, const std::string& message, const std::string& hint) {
  NativeError err;
  SetPlainError(&err, 0, "gss", message, hint);
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  d.Reject(MakeJsError(env, err).Value());
  return d.Promise();
}

std::vector<uint8_t> BufferArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(info.Env(), "token must be a Buffer");
  Napi::Buffer<uint8_t> b = info[0].As<Napi::Buffer<uint8_t>>();
  return std::vector<uint8_t>(b.Data(), b.Data() + b.Length());
}

}  // namespace

Napi::Function GssContext::Init(Napi::Env env) {
  return DefineClass(env, "GssContext",
                     {
                         InstanceMethod<&GssContext::StepJs>("step"),
                         InstanceMethod<&GssContext::WrapJs>("wrap"),
                         InstanceMethod<&GssContext::UnwrapJs>("unwrap"),
                         InstanceMethod<&GssContext::DisposeJs>("dispose"),
                     });
}

// new GssContext(keytab, servicePrincipals[], rcacheDir): no I/O here.
GssContext::GssContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GssContext>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[2].IsString()) {
    throw Napi::TypeError::New(env, "GssContext(keytab: string, principals: string[], rcacheDir: string)");
  }
  keytab_ = info[0].As<Napi::String>().Utf8Value();
  principals_ = StringArray(info[1], "servicePrincipals");
  rcacheDir_ = info[2].As<Napi::String>().Utf8Value();
  bool nul = keytab_.find('\0') != std::string::npos || rcacheDir_.find('\0') != std::string::npos;
  for (const std::string& p : principals_) nul = nul || p.find('\0') != std::string::npos;
  if (nul) throw Napi::TypeError::New(env, "GssContext arguments must not contain NUL");
  keytab_ = KeytabName(keytab_);
}

GssContext::~GssContext() { Release(); }

void GssContext::Release() {
  OM_uint32 minor = 0;
  if (ctx_ != GSS_C_NO_CONTEXT) gss_delete_sec_context(&minor, &ctx_, GSS_C_NO_BUFFER);
  if (cred_ != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &cred_);
  ctx_ = GSS_C_NO_CONTEXT;
  cred_ = GSS_C_NO_CREDENTIAL;
}

Napi::Value GssContext::StepJs(const Napi::CallbackInfo& info) {
  std::vector<uint8_t> token = BufferArg(info);
  if (disposed_) return RejectNow(info.Env(), "GSS context disposed", "other");
  if (busy_) return RejectNow(info.Env(), "GSS context busy (concurrent step/wrap/unwrap)", "other");
  auto* w = new StepWorker(info.Env(), "popgate.gssStep", this, info.This().As<Napi::Object>(), std::move(token));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value GssContext::WrapJs(const Napi::CallbackInfo& info) {
  std::vector<uint8_t> data = BufferArg(info);
  if (disposed_) return RejectNow(info.Env(), "GSS context disposed", "other");
  if (busy_) return RejectNow(info.Env(), "GSS context busy (concurrent step/wrap/unwrap)", "other");
  if (!complete_) return RejectNow(info.Env(), "GSS context not established", "other");
  auto* w = new WrapWorker(info.Env(), this, info.This().As<Napi::Object>(), std::move(data), false);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value GssContext::UnwrapJs(const Napi::CallbackInfo& info) {
  std::vector<uint8_t> token = BufferArg(info);
  if (disposed_) return RejectNow(info.Env(), "GSS context disposed", "other");
  if (busy_) return RejectNow(info.Env(), "GSS context busy (concurrent step/wrap/unwrap)", "other");
  if (!complete_) return RejectNow(info.Env(), "GSS context not established", "other");
  auto* w = new WrapWorker(info.Env(), this, info.This().As<Napi::Object>(), std::move(token), true);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// Idempotent. If a worker is running, the context is released when it ends.
Napi::Value GssContext::DisposeJs(const Napi::CallbackInfo& info) {
  disposed_ = true;
  if (!busy_) Release();
  return info.Env().Undefined();
}

}  // namespace popgate
