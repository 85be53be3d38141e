// Writing safetensors files tensor by tensor (corvid-convert's output).
//
// Memory: one tensor's buffer (reused, grown to the largest tensor), whatever
// the model size. Usage:
//
//   SafetensorsWriter w(out_path);
//   w.set_metadata("corvid.format", "1");
//   float* p = static_cast<float*>(w.begin("emb.folded", DType::F32, {V, C}));
//   ... fill p ...                      // until the next begin() or commit()
//   w.commit();                         // nothing exists at out_path before this
//
// Safety: everything goes to an AtomicFile (temporary file in the target
// directory; fsync + rename on commit). Destroying the writer without commit()
// — an exception anywhere — removes the temporary file: no partial output.
//
// Layout (a valid safetensors file for any reader):
//   * The data section starts at a multiple of 64: the JSON header is padded
//     with trailing spaces (JSON whitespace) to make 8 + N a multiple of 64.
//   * Every tensor's data starts at a multiple of 64 bytes. safetensors
//     requires tensors to tile the data section with no gaps, so a gap before a
//     tensor is filled by an explicit zero tensor "__pad__.<k>" (dtype U8,
//     shape [gap]). Corvid's reader hides these (is_safetensors_padding_name);
//     other readers see them as small extra U8 tensors.
//   * Header order: "__metadata__" first, then tensors in write order.
//   * The header is written last, into space reserved before the data
//     (`header_reserve` bytes). If the final header is larger, the data is
//     copied once into a second temporary file behind a bigger header
//     (copy_file_range, so usually in-kernel); pass a generous reserve (about
//     256 bytes per tensor plus the metadata) to avoid that.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "corvid/io/atomic_file.h"
#include "corvid/sdk/dtype.h"
#include "corvid/sdk/tensor.h"
#include "corvid/sdk/weights.h"

namespace corvid {

inline constexpr uint64_t kSafetensorsAlignment = 64;
inline constexpr const char* kSafetensorsPaddingPrefix = "__pad__.";
inline bool is_safetensors_padding_name(std::string_view name) { return name.rfind(kSafetensorsPaddingPrefix, 0) == 0; }

class SafetensorsWriter {
 public:
  static constexpr uint64_t kDefaultHeaderReserve = 64 * 1024;

  explicit SafetensorsWriter(std::string path, uint64_t header_reserve = kDefaultHeaderReserve);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // "__metadata__" entry; a key set twice keeps the last value.
  void set_metadata(const std::string& key, const std::string& value);

  // Starts the next tensor and returns its 64-byte aligned buffer (nbytes =
  // numel x dtype size, uninitialised) to fill before the next begin() or
  // commit(). The previous tensor is written out first. Names must be unique,
  // non-empty, not "__metadata__" and not start with "__pad__."; at most
  // kMaxDims non-negative dimensions. Returns a valid non-null pointer even for
  // an empty tensor.
  void* begin(const std::string& name, DType dtype, const std::vector<int64_t>& shape);
  // begin() + copy of a (possibly strided) view of the same dtype.
  void add(const std::string& name, const TensorView& view);

  // Writes the last tensor and the header, then fsync + rename. After commit()
  // the writer accepts nothing more.
  void commit();

  const std::string& path() const { return path_; }
  // The current temporary file (for a signal handler's unlink), "" once committed.
  std::string temp_path() const;
  uint64_t bytes_written() const { return data_end_; }  // data section bytes so far (incl. padding)
  size_t tensor_count() const { return entries_.size(); }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;  // relative to the data section
  };
  void flush_pending();
  std::string header_json() const;

  std::string path_;
  std::unique_ptr<AtomicFile> out_;
  uint64_t data_base_;     // absolute offset of the data section in out_
  uint64_t data_end_ = 0;  // relative end of the data written / reserved so far
  std::vector<Entry> entries_;  // real tensors and padding, in data order
  std::unordered_set<std::string> names_;
  std::map<std::string, std::string> metadata_;
  size_t pad_count_ = 0;
  bool pending_ = false;   // the last entry's data is in buf_, not yet written
  bool committed_ = false;
  struct Free { void operator()(void* p) const; };
  std::unique_ptr<void, Free> buf_;
  uint64_t buf_cap_ = 0;
};

// A backend's prepare() output written straight into a SafetensorsWriter,
// each name prefixed (e.g. "stage0/"). The writer must outlive the sink.
class SafetensorsWeightSink : public WeightSink {
 public:
  SafetensorsWeightSink(SafetensorsWriter& w, std::string prefix) : w_(w), prefix_(std::move(prefix)) {}
  void* begin(std::string_view name, DType dtype, const std::vector<int64_t>& shape) override {
    return w_.begin(prefix_ + std::string(name), dtype, shape);
  }

 private:
  SafetensorsWriter& w_;
  std::string prefix_;
};

}  // namespace corvid
