#include "krb5_common.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace popgate {

namespace {

std::atomic<uint64_t> g_generation{1};

struct ThreadContext {
  krb5_context ctx = nullptr;
  uint64_t generation = 0;
  ~ThreadContext() {
    if (ctx != nullptr) krb5_free_context(ctx);
  }
};

thread_local ThreadContext t_context;

}  // namespace

std::string RcacheName(const std::string& dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return "file2:" + d + "/popgate.rcache2";
}

krb5_error_code GetThreadContext(krb5_context* out) {
  const uint64_t gen = g_generation.load(std::memory_order_acquire);
  if (t_context.ctx != nullptr && t_context.generation == gen) {
    *out = t_context.ctx;
    return 0;
  }
  if (t_context.ctx != nullptr) {
    krb5_free_context(t_context.ctx);
    t_context.ctx = nullptr;
  }
  krb5_context ctx = nullptr;
  krb5_error_code code = krb5_init_context(&ctx);
  if (code != 0) {
    *out = nullptr;
    return code;
  }
  t_context.ctx = ctx;
  t_context.generation = gen;
  *out = ctx;
  return 0;
}

void FlushThreadContexts() { g_generation.fetch_add(1, std::memory_order_acq_rel); }

void SetKrbError(NativeError* err, krb5_context ctx, krb5_error_code code, const std::string& stage,
                 const std::string& prefix, const std::string& hint) {
  err->set = true;
  err->code = code;
  err->stage = stage;
  err->hint = hint;
  std::string text;
  if (ctx != nullptr) {
    const char* m = krb5_get_error_message(ctx, code);
    text = m != nullptr ? m : "unknown error";
    krb5_free_error_message(ctx, m);
  } else {
    const char* m = error_message(code);
    text = m != nullptr ? m : "unknown error";
  }
  err->message = prefix.empty() ? text : prefix + ": " + text;
}

void SetPlainError(NativeError* err, int64_t code, const std::string& stage, const std::string& message,
                   const std::string& hint) {
  err->set = true;
  err->code = code;
  err->stage = stage;
  err->message = message;
  err->hint = hint;
}

Napi::Error MakeJsError(Napi::Env env, const NativeError& err) {
  Napi::Error e = Napi::Error::New(env, err.message.empty() ? "krb5 error" : err.message);
  Napi::Object o = e.Value();
  o.Set("code", Napi::Number::New(env, static_cast<double>(err.code)));
  if (err.gssMajor != 0) o.Set("gssMajor", Napi::Number::New(env, err.gssMajor));
  if (!err.hint.empty()) o.Set("hint", Napi::String::New(env, err.hint));
  if (!err.stage.empty()) o.Set("stage", Napi::String::New(env, err.stage));
  if (!err.krbError.empty()) {
    o.Set("krbError", Napi::Buffer<uint8_t>::Copy(env, err.krbError.data(), err.krbError.size()));
  }
  return e;
}

bool CheckRcacheDir(const std::string& dir, NativeError* err) {
  struct stat st;
  if (dir.empty()) {
    SetPlainError(err, EINVAL, "rcache", "replay cache directory is not configured", "config");
    return false;
  }
  if (stat(dir.c_str(), &st) != 0) {
    const int e = errno;
    SetPlainError(err, e, "rcache", "replay cache directory " + dir + ": " + std::strerror(e), "config");
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    SetPlainError(err, ENOTDIR, "rcache", "replay cache directory " + dir + ": not a directory", "config");
    return false;
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    const int e = errno;
    SetPlainError(err, e, "rcache", "replay cache directory " + dir + ": " + std::strerror(e), "config");
    return false;
  }
  return true;
}

std::string KeytabName(const std::string& keytab) {
  if (!keytab.empty() && keytab[0] == '/') return "FILE:" + keytab;
  return keytab;
}

PromiseWorker::PromiseWorker(Napi::Env env, const char* name)
    : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  if (err_.set) {
    deferred_.Reject(MakeJsError(env, err_).Value());
  } else {
    Napi::Value v;
    try {
      v = Result(env);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      Done();
      return;
    }
    deferred_.Resolve(v);
  }
  Done();
}

void PromiseWorker::OnError(const Napi::Error& e) {
  // Only reached when Execute() threw (e.g. std::bad_alloc).
  Napi::HandleScope scope(Env());
  deferred_.Reject(e.Value());
  Done();
}

bool ReadTlv(const uint8_t* p, size_t n, Tlv* out) {
  if (n < 2) return false;
  if ((p[0] & 0x1f) == 0x1f) return false;  // multi-byte tags never occur in Kerberos
  size_t i = 1;
  size_t len = 0;
  const uint8_t b = p[i++];
  if (b < 0x80) {
    len = b;
  } else {
    const size_t nb = b & 0x7f;
    if (nb == 0 || nb > 4 || nb > n - i) return false;  // indefinite or absurd lengths
    for (size_t k = 0; k < nb; k++) len = (len << 8) | p[i++];
  }
  if (len > n - i) return false;
  out->tag = p[0];
  out->value = p + i;
  out->length = len;
  out->total = i + len;
  return true;
}

bool FindTicketInApReq(const uint8_t* p, size_t n, krb5_data* ticket) {
  Tlv app;
  if (!ReadTlv(p, n, &app) || app.tag != 0x6e) return false;  // [APPLICATION 14]
  Tlv seq;
  if (!ReadTlv(app.value, app.length, &seq) || seq.tag != 0x30) return false;
  const uint8_t* q = seq.value;
  size_t left = seq.length;
  while (left > 0) {
    Tlv field;
    if (!ReadTlv(q, left, &field)) return false;
    if (field.tag == 0xa3) {  // ticket [3] Ticket
      Tlv t;
      if (!ReadTlv(field.value, field.length, &t) || t.tag != 0x61) return false;
      ticket->magic = KV5M_DATA;
      ticket->data = reinterpret_cast<char*>(const_cast<uint8_t*>(field.value));
      ticket->length = static_cast<unsigned int>(t.total);
      return true;
    }
    q += field.total;
    left -= field.total;
  }
  return false;
}

std::string UnparseName(krb5_context ctx, krb5_const_principal p) {
  char* s = nullptr;
  if (krb5_unparse_name(ctx, p, &s) != 0 || s == nullptr) return "?";
  std::string r(s);
  krb5_free_unparsed_name(ctx, s);
  return r;
}

bool MatchTicketServer(krb5_context ctx, const uint8_t* apreq, size_t n,
                       const std::vector<krb5_principal>& principals, int* index, std::string* sname) {
  krb5_data tdata;
  if (!FindTicketInApReq(apreq, n, &tdata)) return false;
  krb5_ticket* ticket = nullptr;
  if (krb5_decode_ticket(&tdata, &ticket) != 0 || ticket == nullptr) return false;
  *index = -1;
  for (size_t i = 0; i < principals.size(); i++) {
    if (krb5_principal_compare(ctx, principals[i], ticket->server)) {
      *index = static_cast<int>(i);
      break;
    }
  }
  *sname = UnparseName(ctx, ticket->server);
  krb5_free_ticket(ctx, ticket);
  return true;
}

bool ParsePrincipals(krb5_context ctx, const std::vector<std::string>& names, std::vector<krb5_principal>* out,
                     NativeError* err) {
  if (names.empty()) {
    SetPlainError(err, EINVAL, "config", "no service principal configured", "config");
    return false;
  }
  for (const std::string& name : names) {
    krb5_principal p = nullptr;
    krb5_error_code code = krb5_parse_name(ctx, name.c_str(), &p);
    if (code != 0) {
      SetKrbError(err, ctx, code, "config", "service principal \"" + name + "\"", "config");
      return false;
    }
    out->push_back(p);
  }
  return true;
}

void FreePrincipals(krb5_context ctx, std::vector<krb5_principal>* princs) {
  for (krb5_principal p : *princs) krb5_free_principal(ctx, p);
  princs->clear();
}

std::vector<std::string> StringArray(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an array of strings");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an array of strings");
    out.push_back(e.As<Napi::String>().Utf8Value());
  }
  return out;
}

}  // namespace popgate
