// pamAuthenticate (pam.cc): Linux-PAM password check on the libuv pool.
#pragma once

#include "krb5_common.h"  // PromiseWorker

#include <napi.h>

namespace popgate {

Napi::Value PamAuthenticate(const Napi::CallbackInfo& info);

}  // namespace popgate
