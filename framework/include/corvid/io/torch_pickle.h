// A restricted unpickler for the data.pkl of a torch.save zip archive.
//
// It understands exactly what torch.save writes for a state dict — a dict or
// collections.OrderedDict from names to tensors rebuilt by
// torch._utils._rebuild_tensor_v2 from ('storage', <Type>Storage, key,
// location, numel) persistent ids — plus plain str/int/float/bool/None values
// (ChatRWKV's `_strategy`, `_rescale_layer`, `_version`). It is an
// interpreter of data only: it never imports or calls anything. A pickle naming
// any other global (os.system, builtins.eval, ...) is refused with an error
// that names it, before anything else happens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "corvid/sdk/dtype.h"

namespace corvid {

// One tensor as the pickle describes it; its storage is resolved (and its
// extent checked) against the archive's data/<key> entry by the caller.
struct TorchTensorRecord {
  std::string storage_key;    // the zip entry is "<archive>/data/<key>"
  std::string storage_type;   // "FloatStorage", ...
  bool dtype_supported = false;
  DType dtype = DType::F32;    // meaningful when dtype_supported
  int64_t storage_numel = 0;  // as recorded in the persistent id
  int64_t offset = 0;         // storage offset, in elements
  std::vector<int64_t> shape, stride;  // stride in elements; both checked non-negative
};

struct TorchStateDict {
  std::vector<std::pair<std::string, TorchTensorRecord>> tensors;  // dict order
  std::vector<std::pair<std::string, std::string>> metadata;       // non-tensor values, str()'d
};

// Parses a pickle (protocols 2-5, the opcode subset torch uses). `where`
// prefixes every error, e.g. "model.pth: data.pkl"; errors say "at byte N".
TorchStateDict parse_torch_pickle(const uint8_t* data, size_t size, const std::string& where);

// The element type of a torch storage class name ("HalfStorage" -> F16);
// false for a known torch storage without a Corvid dtype (DoubleStorage, ...).
bool torch_storage_dtype(const std::string& storage_type, DType& out);

}  // namespace corvid
