// What the public opaque handles hold.
#pragma once

#include <memory>

#include "core/kernel/backend.h"
#include "core/kernel/mask_plan.h"

struct alibi_context_s {
  alibi_device kind;
  int device_index;
  std::shared_ptr<alibi::DeviceContext> device;
};

struct alibi_tensor_s {
  alibi_device kind;
  int device_index;
  std::shared_ptr<alibi::DeviceContext> device;
  alibi::TensorView view;
  bool owned;
  ~alibi_tensor_s() {
    if (owned && view.data) device->deallocate(view.data);
  }
};

struct alibi_mask_s {
  alibi_device kind;
  int device_index;
  std::shared_ptr<alibi::DeviceContext> device;
  alibi::MaskPlan plan;
  std::shared_ptr<alibi::DeviceMask> device_mask;
};
