#include "cuda_util.h"

#include <cstdio>

namespace corvid::cuda {

void throw_cuda(cudaError_t e, const char* what, int device) {
  throw Error("cuda:" + std::to_string(device) + ": " + what + ": " + cudaGetErrorName(e) + " (" +
              cudaGetErrorString(e) + ")");
}

std::string check_cuda_device(int device_index) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error so later calls report their own
    throw Error(std::string("no CUDA device: ") + cudaGetErrorString(e));
  }
  if (n <= 0) throw Error("no CUDA device: the CUDA runtime found 0 devices");
  if (device_index < 0 || device_index >= n)
    throw Error("no CUDA device: cuda:" + std::to_string(device_index) + " requested, " + std::to_string(n) +
                " device" + (n == 1 ? "" : "s") + " present");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device_index), "cudaGetDeviceProperties", device_index);
  if (prop.major < 8)
    throw Error("cuda:" + std::to_string(device_index) + " (" + prop.name + ") has compute capability " +
                std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                "; the CUDA plugins are built for 8.0 and newer");
  return std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor);
}

DeviceGuard::DeviceGuard(int device) : dev_(device) {
  check(cudaGetDevice(&prev_), "cudaGetDevice", device);
  if (prev_ != device) check(cudaSetDevice(device), "cudaSetDevice", device);
}

DeviceGuard::~DeviceGuard() {
  if (prev_ >= 0 && prev_ != dev_) (void)cudaSetDevice(prev_);
}

std::string format_bytes(uint64_t b) {
  char buf[64];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", double(b) / double(1ull << 30));
  else std::snprintf(buf, sizeof buf, "%.1f MiB", double(b) / double(1ull << 20));
  return std::string(buf) + " (" + std::to_string(b) + " bytes)";
}

}  // namespace corvid::cuda
