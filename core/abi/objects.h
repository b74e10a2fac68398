// What the public opaque handles hold.
#pragma once

#include <memory>

#include "core/kernel/backend.h"
#include "core/kernel/mask_plan.h"

namespace alibi {

// A backend context, shared by the context handle and every tensor and mask made with it, so
// that they may outlive the handle.
class Device {
 public:
  Device(const BackendOps& ops, void* context) : ops_(ops), context_(context) {}
  ~Device() { ops_.context_destroy(context_); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const BackendOps& ops() const { return ops_; }

  // Calls a fallible entry of the backend's table on this context; a failure throws its Error.
  template <class Entry, class... Args>
  void call(Entry BackendOps::*entry, const Args&... args) const {
    BackendError error;
    check((ops_.*entry)(context_, args..., &error), error);
  }

  void deallocate(void* data) const { ops_.deallocate(context_, data); }

  // The backend's copy of a mask; released with the last reference.
  std::shared_ptr<void> upload_mask(const MaskView& mask) const {
    void* uploaded = nullptr;
    call(&BackendOps::mask_upload, &mask, &uploaded);
    const BackendOps* ops = &ops_;
    return std::shared_ptr<void>(uploaded, [ops](void* m) { ops->mask_release(m); });
  }

 private:
  const BackendOps& ops_;
  void* const context_;
};

}  // namespace alibi

struct alibi_context_s {
  alibi_device kind;
  int device_index;
  std::shared_ptr<alibi::Device> device;
};

struct alibi_tensor_s {
  alibi_device kind;
  int device_index;
  std::shared_ptr<alibi::Device> device;
  alibi::TensorView view;
  bool owned;
  ~alibi_tensor_s() {
    if (owned && view.data) device->deallocate(view.data);
  }
};

struct alibi_mask_s {
  alibi_device kind;
  int device_index;
  std::shared_ptr<alibi::Device> device;
  alibi::MaskPlan plan;
  alibi::MaskView view;  // of plan
  std::shared_ptr<void> device_mask;
};
