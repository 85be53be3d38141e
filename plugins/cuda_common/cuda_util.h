// Small host-side CUDA helpers: error checks that throw corvid::Error, the
// device check every stage runs first, and owning handles.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "corvid/sdk/error.h"

namespace corvid::cuda {

[[noreturn]] void throw_cuda(cudaError_t e, const char* what, int device);

// Throws Error("cuda:<dev>: <what>: <CUDA error>") when e != cudaSuccess.
inline void check(cudaError_t e, const char* what, int device) {
  if (e != cudaSuccess) throw_cuda(e, what, device);
}

// Checks that a kernel launch was accepted (launch-configuration errors).
inline void check_launch(const char* kernel, int device) { check(cudaGetLastError(), kernel, device); }

// "no CUDA device: ..." when the runtime finds no driver or no device, or the
// index is out of range; an Error naming the device when its compute capability
// is below what this build targets (8.0). Returns the device name.
std::string check_cuda_device(int device_index);

// Makes `device` current for the lifetime of the guard (restores the previous one).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
  int dev_ = 0;
};

// Human-readable byte counts for messages ("1.23 GiB (1320702443 bytes)").
std::string format_bytes(uint64_t b);

}  // namespace corvid::cuda
