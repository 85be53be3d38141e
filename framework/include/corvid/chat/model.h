// What the chat and the quality benchmarks need from a model, as an interface:
// corvid-chat runs it on the Engine (EngineChatModel); tests can drive the chat
// logic with a small deterministic model of their own.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "corvid/sdk/dtype.h"

namespace corvid {
class Engine;
}

namespace corvid::chat {

// Identifies the weights and the state layout a session was saved with.
struct ModelIdentity {
  std::string description;  // "v4 L=24 C=1024 V=50277" (for messages)
  uint64_t fingerprint = 0; // hash of hyper-parameters, tensor names/shapes/dtypes and leading bytes
  size_t state_floats = 0;  // canonical fp32 state size
  // Activation dtype of each layer's state (slot order, one per layer): a saved
  // state loads where every layer's dtype can hold it losslessly.
  std::vector<DType> state_dtypes;
};

class ChatModel {
 public:
  // An opaque recurrent state (deep-copyable through the model).
  class StateBox {
   public:
    virtual ~StateBox() = default;
  };

  virtual ~ChatModel() = default;
  virtual int n_vocab() const = 0;
  virtual std::unique_ptr<StateBox> new_state() const = 0;                 // the empty state
  virtual void copy_state(const StateBox& from, StateBox& to) const = 0;   // deep copy, no reallocation
  virtual void reset_state(StateBox& st) const = 0;
  // Feeds tokens (sequence mode) and writes the logits after the last one (n_vocab floats).
  virtual void forward(std::span<const int32_t> tokens, StateBox& st, float* logits) = 0;
  // Logits after every token: out[T][n_vocab].
  virtual void forward_all(std::span<const int32_t> tokens, StateBox& st, float* out) = 0;
  virtual std::vector<float> serialize_state(const StateBox& st) const = 0;
  virtual void deserialize_state(std::span<const float> data, StateBox& st) const = 0;
  virtual ModelIdentity identity() const = 0;
};

// The Engine as a ChatModel (the engine must outlive it).
std::unique_ptr<ChatModel> make_engine_chat_model(Engine& engine);

}  // namespace corvid::chat
