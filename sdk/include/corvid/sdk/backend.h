// The Backend interface: what a compute plugin implements.
//
// A *strategy* (e.g. "cuda fp16i8 *20 -> cpu fp32") is resolved by the framework
// into a pipeline of *stages*. Each stage is a contiguous range of *slots* on one
// device at one precision, built by one backend. Slots 0..L-1 are the RWKV blocks;
// slot L is "ln_out + head" (rwkv-reference §3.2 counts the head as a layer).
//
// Data flow of one call (step mode: T = 1; sequence mode: T > 1):
//
//   framework: x[T][C] (host, fp32) = folded embedding rows of the tokens
//   for each stage:  stage.forward(x, T, state_of_stage, options)
//       - runs blocks [first_block, end_block) on x, updating its state slice
//       - applies the RESCALE_LAYER halving after every block l with (l+1) % R == 0
//       - if it holds the head and logits were asked for: ln_out + head
//   x is handed from stage to stage as host fp32, exactly the values the
//   stage's activation type holds (fp16/bf16 values widen to fp32 losslessly),
//   so a CPU stage after a CUDA stage sees what the reference's x.to() gives.
//
// Threading: a Stage is used by one thread at a time. It may use its own worker
// threads inside forward(); `StageSpec::threads` is the budget.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "corvid/sdk/dtype.h"
#include "corvid/sdk/model.h"
#include "corvid/sdk/weights.h"

namespace corvid {

// Which layers a stage runs and how.
struct StageSpec {
  std::string device = "cpu";    // "cpu", "cuda", "cuda:1", ... as written in the strategy
  int device_index = 0;          // the N of "cuda:N" (0 when absent)
  Precision precision;           // activation / weight types
  int first_block = 0;           // first RWKV block (slot) of this stage
  int end_block = 0;             // one past the last block; == first_block when only the head
  bool has_head = false;         // slot L (ln_out + head) belongs to this stage
  int stream_first = -1;         // blocks >= stream_first are streamed ("*N+"), -1 = none
  int threads = 0;               // CPU threads this stage may use (0 = backend default)
  int chunk_len = 256;           // longest T the framework will pass to forward()

  int n_blocks() const { return end_block - first_block; }
  bool streamed(int block) const { return stream_first >= 0 && block >= stream_first; }
};

struct ForwardOptions {
  // Where to write logits (host, fp32) when this stage holds the head.
  // nullptr: the head is skipped entirely.
  float* logits = nullptr;
  // false: logits of the last row only ([V]); true: of every row ([T][V]).
  bool all_logits = false;
  // RWKV-7 only (nullptr for other versions): host fp32 [T][C], the value
  // vector v of block 0 for each row ("v_first", rwkv-reference §4.5). The stage
  // holding block 0 writes it; stages after it read it. The framework passes the
  // same buffer to every stage of one call; it is not part of the state.
  float* v_first = nullptr;
};

// The recurrent state of one stage's blocks. Owned by the caller (rwkv.cpp style),
// created by the stage, living on the stage's device.
class StageState {
 public:
  virtual ~StageState() = default;
  virtual std::unique_ptr<StageState> clone() const = 0;       // deep copy
  virtual void copy_from(const StageState& other) = 0;          // same stage only
  virtual void reset() = 0;                                     // initial state
  // Canonical host form, identical for every backend so state files and tests
  // can compare them: for each block in order, fp32 arrays
  //   v4:   att_shift[C], a[A], b[A], p[A], ffn_shift[C]
  //   v5/6: att_shift[C], S[H][N key][N value], ffn_shift[C]
  //   v7:   att_shift[C], S[H][N value][N key], ffn_shift[C]
  // (shift entries hold LayerNorm outputs; values in the activation type widen
  // losslessly to fp32).
  virtual size_t serialized_floats() const = 0;
  virtual void serialize(float* dst) const = 0;
  virtual void deserialize(const float* src) = 0;
};

class Stage {
 public:
  virtual ~Stage() = default;
  virtual std::unique_ptr<StageState> new_state() const = 0;
  // x: host fp32 [T][C], read and overwritten with the stage's output.
  // T <= spec.chunk_len. Sequence mode must give the same result as T calls
  // with one token each (rwkv-reference §4.0), up to the backend's rounding.
  virtual void forward(float* x, int T, StageState& state, const ForwardOptions& opts) = 0;
  // Bytes of weights resident on the device / streamed from host per token.
  virtual uint64_t resident_weight_bytes() const = 0;
  virtual uint64_t streamed_weight_bytes() const { return 0; }
  // Bytes moved by streaming since creation (for "*N+" reporting).
  virtual uint64_t streamed_bytes_total() const { return 0; }
  // Human-readable description for logs ("oneDNN fp32, AVX-512, 2 threads").
  virtual std::string describe() const = 0;
};

// Progress callback for long operations (prepare): done/total in bytes.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

class Backend {
 public:
  virtual ~Backend() = default;

  // Throws Error when the device cannot be used (e.g. "no CUDA device"). Called
  // by the framework before prepare/create_stage so the run fails early.
  virtual void check_device(const StageSpec& spec) const = 0;

  // Identifies the prepared layout: a converted file records it per stage and is
  // loaded only by a backend returning the same string. Include everything that
  // changes the bytes (plugin name, precision, layout version, packing).
  virtual std::string layout_id(const StageSpec& spec, const ModelHParams& hp) const = 0;

  // Bytes of prepared weights this stage will hold (for plans, before loading).
  virtual uint64_t estimate_weight_bytes(const StageSpec& spec, const ModelHParams& hp) const = 0;

  // Step 1: transform raw weights into this backend's layout (see weights.h).
  virtual void prepare(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw,
                       WeightSink& out, const ProgressFn& progress) const = 0;

  // Step 2: build the stage. `prepared` outlives the returned stage.
  // Out of device memory -> Error with bytes needed vs free, nothing half-built.
  virtual std::unique_ptr<Stage> create_stage(const StageSpec& spec, const ModelHParams& hp,
                                              const WeightSource& prepared) const = 0;
};

}  // namespace corvid
