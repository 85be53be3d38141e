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
