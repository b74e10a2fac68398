// Finds the backend of a device kind. The CPU backend is built in; the CUDA backend is the
// shared library ALIBI_CUDA_LIBRARY (libalibi_cuda.so.<major>), loaded on first use from
// libalibi's own directory or the loader's search path, so libalibi itself never depends on the
// CUDA runtime.
#include <dlfcn.h>

#include <mutex>
#include <string>

#include "core/abi/ops.h"

namespace alibi {

namespace {

constexpr const char* kCudaLibrary = ALIBI_CUDA_LIBRARY;

struct CudaBackendLoad {
  const BackendOps* backend = nullptr;
  std::string why_unavailable;
};

std::string own_directory() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&own_directory), &info) == 0 || !info.dli_fname) return "";
  std::string path = info.dli_fname;
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

void* open_cuda_library(std::string* error) {
  std::string beside = own_directory() + kCudaLibrary;
  if (void* handle = dlopen(beside.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
  if (void* handle = dlopen(kCudaLibrary, RTLD_NOW | RTLD_LOCAL)) return handle;
  const char* message = dlerror();
  *error = message ? message : "not found";
  return nullptr;
}

CudaBackendLoad load_cuda_backend() {
  CudaBackendLoad load;
  std::string error;
  void* handle = open_cuda_library(&error);
  if (!handle) {
    load.why_unavailable = std::string("no CUDA backend library: ") + kCudaLibrary +
                           " could not be loaded (" + error + ")";
    return load;
  }
  auto entry = reinterpret_cast<alibi_backend_entry_fn>(dlsym(handle, "alibi_backend_entry"));
  load.backend = entry ? entry(kBackendAbiVersion) : nullptr;
  if (!load.backend)
    load.why_unavailable = std::string(kCudaLibrary) + " does not match this libalibi version";
  return load;
}

const CudaBackendLoad& cuda_backend_load() {
  static std::once_flag once;
  static CudaBackendLoad load;
  std::call_once(once, [] { load = load_cuda_backend(); });
  return load;
}

// The backend of a device kind (CPU or CUDA), or nullptr with the reason in *why.
const BackendOps* find_backend(alibi_device kind, std::string* why) {
  if (kind == ALIBI_DEVICE_CPU) return &cpu_backend();
  const CudaBackendLoad& load = cuda_backend_load();
  if (!load.backend) *why = load.why_unavailable;
  return load.backend;
}

int cuda_device_count() {
  std::string why;
  const BackendOps* cuda = find_backend(ALIBI_DEVICE_CUDA, &why);
  return cuda ? cuda->device_count() : 0;
}

}  // namespace

int device_count(alibi_device kind) {
  switch (kind) {
    case ALIBI_DEVICE_CPU: return 1;
    case ALIBI_DEVICE_CUDA: return cuda_device_count();
    case ALIBI_DEVICE_AUTO: return cuda_device_count() > 0 ? cuda_device_count() : 1;
  }
  return 0;
}

alibi_context_s* context_create(alibi_device device, int device_index) {
  if (device != ALIBI_DEVICE_AUTO && device != ALIBI_DEVICE_CPU && device != ALIBI_DEVICE_CUDA)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "device = %d is not an alibi_device", int(device));
  if (device == ALIBI_DEVICE_AUTO)
    device = cuda_device_count() > 0 ? ALIBI_DEVICE_CUDA : ALIBI_DEVICE_CPU;
  std::string why;
  const BackendOps* backend = find_backend(device, &why);
  if (!backend) fail(ALIBI_STATUS_BACKEND_UNAVAILABLE, "device = CUDA: %s", why.c_str());
  const int count = backend->device_count();
  if (device == ALIBI_DEVICE_CUDA && count == 0) {
    BackendError reason;
    backend->unavailable_reason(&reason);
    fail(ALIBI_STATUS_BACKEND_UNAVAILABLE, "device = CUDA: %s", reason.message);
  }
  if (device_index < 0 || device_index >= count)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "device_index = %d is outside [0, %d)", device_index,
         count);
  void* context = nullptr;
  BackendError error;
  check(backend->context_create(device_index, &context, &error), error);
  return new alibi_context_s{device, device_index, std::make_shared<Device>(*backend, context)};
}

}  // namespace alibi
