// Internal: the Checkpoint implementation shared by the two formats. Both keep
// the file mapped and hand out TensorViews into the mapping (or into the few
// buffers that had to be inflated).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "corvid/io/checkpoint.h"
#include "corvid/io/mapped_file.h"

namespace corvid {

class MappedCheckpoint : public Checkpoint {
 public:
  MappedCheckpoint(Format f, MappedFile file) : format_(f), file_(std::move(file)) {}

  Format format() const override { return format_; }
  const std::string& path() const override { return file_.path(); }
  uint64_t file_size() const override { return file_.size(); }
  const std::vector<std::string>& names() const override { return names_; }
  const TensorView* find(const std::string& name) const override {
    auto it = views_.find(name);
    return it == views_.end() ? nullptr : &it->second;
  }
  const std::map<std::string, std::string>& metadata() const override { return metadata_; }

  const MappedFile& file() const { return file_; }
  [[noreturn]] void fail(const std::string& what) const;
  void add_tensor(const std::string& name, const TensorView& v);
  void add_metadata(const std::string& key, const std::string& value);
  void keep_alive(std::shared_ptr<const void> buffer) { owned_.push_back(std::move(buffer)); }

 private:
  Format format_;
  MappedFile file_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, TensorView> views_;  // node-based: pointers stay valid
  std::map<std::string, std::string> metadata_;
  std::vector<std::shared_ptr<const void>> owned_;    // inflated storages
};

// Fill `ck` from its file. Throw Error "<path>: ..." on anything malformed.
void load_torch_zip(MappedCheckpoint& ck);
void load_safetensors(MappedCheckpoint& ck);

// Overflow-checked helpers for sizes read from files.
inline bool mul_ok(uint64_t a, uint64_t b, uint64_t& out) { return !__builtin_mul_overflow(a, b, &out); }
inline bool add_ok(uint64_t a, uint64_t b, uint64_t& out) { return !__builtin_add_overflow(a, b, &out); }

// "(4, 8)" from a vector.
std::string dims_string(const std::vector<int64_t>& v);

}  // namespace corvid
