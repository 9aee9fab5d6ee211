// Settling a promise from a completion callback (an AsyncWorker's OnOK/OnError, a thread-safe
// function's call_js), shared by addon.cc and tensorrt_binding.cc.
#pragma once

#include <napi.h>

#include <exception>
#include <string>

namespace fm::napi {

// Runs `settle` (which resolves or rejects `deferred`) so that no exception leaves the callback.
// While a Worker thread's environment shuts down (worker.terminate() with a call in flight), N-API
// calls fail and node-addon-api throws; thrown out of a completion callback, that ended the whole
// process (std::terminate while it rethrew into the dying environment). An error building the
// result rejects the promise instead; when even that fails, no one can observe the promise any more.
template <typename F>
void settle(const Napi::Promise::Deferred& deferred, F&& settle) noexcept {
  try {
    settle();
  } catch (const Napi::Error& e) {
    try {
      deferred.Reject(e.Value());
    } catch (...) {
    }
  } catch (const std::exception& e) {  // std::bad_alloc building the result, say: the call still settles
    try {
      deferred.Reject(Napi::Error::New(deferred.Env(), std::string("face-multitask: ") + e.what()).Value());
    } catch (...) {
    }
  } catch (...) {
  }
}

}  // namespace fm::napi
