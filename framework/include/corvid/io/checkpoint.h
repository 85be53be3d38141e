// An opened model file: tensors by name, memory-mapped, never executed.
//
// Formats:
//   * PyTorch zip (`torch.save`, .pth): a restricted unpickler reads data.pkl;
//     storages are used in place from the mapping (stored zip entries) or
//     inflated once (compressed entries). ChatRWKV-converted files are
//     recognised by their `_strategy` key (metadata()).
//   * safetensors: JSON header + data, used in place. Corvid-converted files are
//     safetensors with `corvid.format` in the metadata.
// Errors are corvid::Error with one line: "<path>: <what> at <where>, expected <what>".
//
// What the views promise (implementation: framework/src/io/):
//   * Views honour the file's strides and storage offsets (torch views may be
//     transposed / sliced: check is_contiguous()). Every view's extent
//     (offset + sum((size-1) x stride) + 1 elements) was checked to lie inside
//     its storage, and its logical size numel x dtype to be at most the file
//     size (or the inflated storage size), so consumers may allocate nbytes().
//   * Alignment: torch.save storages and Corvid-written safetensors are 64-byte
//     aligned in the file; safetensors from other writers may not be (only the
//     dtype's natural alignment is then not guaranteed either).
//   * Tensor dtypes: F32/F16/BF16/U8/I8/I32/I64 (torch Float/Half/BFloat16/Byte/
//     Char/Int/Long storages). Other dtypes are an error naming the tensor.
//   * .pth pickles: dict or OrderedDict of name -> tensor (torch's
//     _rebuild_tensor_v2 / _rebuild_parameter) plus str/int/float/bool/None
//     values (metadata(), Python str() of the value). Any other global is
//     refused by name; nested dicts are refused. Nothing is executed.
//   * safetensors "__pad__.<n>" U8 tensors (alignment filler written by
//     SafetensorsWriter) are not listed.
// See also: safetensors_writer.h (writing), zip_archive.h, torch_pickle.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "corvid/sdk/tensor.h"

namespace corvid {

class Checkpoint {
 public:
  enum class Format { TorchZip, Safetensors };

  virtual ~Checkpoint() = default;

  // Opens and validates a checkpoint (format detected from the content).
  static std::unique_ptr<Checkpoint> open(const std::string& path);

  virtual Format format() const = 0;
  virtual const std::string& path() const = 0;
  virtual uint64_t file_size() const = 0;
  // Tensor names in file order (dict order matters for version detection).
  virtual const std::vector<std::string>& names() const = 0;
  virtual const TensorView* find(const std::string& name) const = 0;
  // Non-tensor entries: safetensors "__metadata__"; for .pth the non-tensor
  // values of the dict (ChatRWKV's `_strategy`, `_rescale_layer`, `_version`)
  // as strings.
  virtual const std::map<std::string, std::string>& metadata() const = 0;
};

const char* format_name(Checkpoint::Format f);

}  // namespace corvid
