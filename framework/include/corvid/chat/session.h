// The chat of ChatRWKV's v2/chat.py (rwkv-reference §7), as a library the app
// and the tests drive: prefill of the init prompt, snapshots, the commands,
// the reply loop with its newline-bias schedule and "\n\n" stop, free
// generation, per-message -temp=/-top_p=, plus Corvid's +help, +save/+load and
// +stats. The app only reads lines and prints what the session writes.
//
// Decisions on the reference's quirks (docs/chat.md has the full list):
//   * +prompt FILE starts from an empty state and makes the new prompt the
//     chat_init snapshot (the reference feeds it on top of the current state).
//   * -temp=X / -top_p=Y remove exactly the option text typed (the reference
//     removes "-temp=" + %g of the value, so "-temp=1.0" left ".0" behind).
//   * Interrupting a reply keeps the partial reply (already fed token by token)
//     and feeds the missing part of the "\n\n" separator, so the state ends
//     like a finished reply; the result is saved as `chat`.
//   * Token 0 decodes to nothing with both tokenizers (the World tokenizer's
//     Python decode returns U+FFFD for it, an accident of a dict lookup).
//   * Missing full-width AVOID_REPEAT marks (vocabularies where one does not
//     encode to a single token) are skipped instead of asserting.
//   * All commands match case-insensitively (the reference's +reset is exact).
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "corvid/chat/model.h"
#include "corvid/sampling/penalty.h"
#include "corvid/sampling/sampler.h"
#include "corvid/sdk/prompt_template.h"
#include "corvid/sdk/tokenizer.h"

namespace corvid::chat {

struct ChatSettings {
  SamplingParams sampling{1.2f, 0.5f, 0};   // GEN_TEMP, GEN_TOP_P (no top_k)
  PenaltyParams penalty{0.4, 0.4, 0.996};   // presence, frequency, decay
  LogitEdits edits;                          // extra bans / bias (none in the reference)
  int chat_len_short = 40;                   // CHAT_LEN_SHORT
  int chat_len_long = 150;                   // CHAT_LEN_LONG
  int free_gen_len = 256;                    // FREE_GEN_LEN
  int max_reply_tokens = 999;
  int chunk_len = 256;                       // CHUNK_LEN of prompt feeds
  uint64_t seed = 0;
  bool avoid_repeat = true;                  // AVOID_REPEAT "，：？！"
};

// Where the session writes: model text as it streams, and messages.
class ChatOutput {
 public:
  virtual ~ChatOutput() = default;
  virtual void write(std::string_view text) = 0;
  virtual void prefill_progress(size_t done, size_t total) {}
};

// Makes a template from a prompt file for +prompt (the app binds the registry).
using PromptLoader = std::function<std::shared_ptr<PromptTemplate>(const std::string& path)>;

enum class Snap { ChatInit = 0, Chat, ChatPre, Gen0, Gen1 };
inline constexpr int kSnapCount = 5;
const char* snap_name(Snap s);

struct Snapshot {
  bool valid = false;
  bool has_logits = false;  // false after an empty init prompt
  std::vector<float> logits;
  std::unique_ptr<ChatModel::StateBox> state;
  std::vector<int32_t> tokens;
};

struct TurnStats {
  size_t prefill_tokens = 0;
  double prefill_seconds = 0;
  size_t decode_tokens = 0;
  double decode_seconds = 0;
  bool valid = false;
};

class ChatSession {
 public:
  ChatSession(ChatModel& model, const Tokenizer& tok, std::shared_ptr<PromptTemplate> tpl, ChatSettings settings,
              ChatOutput& out, PromptLoader loader = nullptr);
  ~ChatSession();

  // Feeds the init prompt (with fix_tokens) in chunks; saves chat_init and chat.
  // Returns false when interrupted (the session is then unusable).
  bool start();

  enum class Result { Done, Empty, Error };
  // One line of user input, exactly as typed (the two characters "\n" mean a newline).
  Result handle(std::string_view line);

  // Set from a signal handler to stop the current reply or generation.
  std::atomic<bool>& interrupt_flag() { return interrupt_; }
  bool last_turn_interrupted() const { return last_interrupted_; }

  const PromptTemplate& prompt_template() const { return *tpl_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  const std::vector<float>& logits() const { return logits_; }
  const Snapshot& snapshot(Snap s) const { return snaps_[size_t(s)]; }
  std::vector<float> state_data() const { return model_.serialize_state(*state_); }
  std::vector<float> snapshot_state_data(Snap s) const;
  const TurnStats& last_stats() const { return stats_; }
  const ChatSettings& settings() const { return settings_; }
  int32_t end_of_line() const { return eol_; }

  std::string help_text() const;
  // The init prompt as chat.py shows it ("\n\n<bot>" shown as "\n<bot>").
  std::string init_display() const;

  // Session files (+save/+load); throw corvid::Error with a one-line reason.
  void save(const std::string& path) const;
  void load(const std::string& path);

 private:
  struct TurnParams {
    SamplingParams sampling;
  };
  void run_rnn(std::span<const int32_t> toks, double newline_adj, bool progress = false);
  std::vector<int32_t> fix_tokens(std::vector<int32_t> t) const;
  void save_snap(Snap s);
  bool load_snap(Snap s);
  void empty_state();
  void reply(const TurnParams& p);
  void free_generation(const TurnParams& p, double newline_adj_every);
  int32_t draw(const TurnParams& p);
  void feed_prompt_file(const std::string& path);
  void write(std::string_view s) { out_.write(s); }

  ChatModel& model_;
  const Tokenizer& tok_;
  std::shared_ptr<PromptTemplate> tpl_;
  ChatSettings settings_;
  ChatOutput& out_;
  PromptLoader loader_;

  int32_t eol_ = -1, eot_ = 0, double_nl_ = -1;
  bool strict_decode_ = false;  // World: a decode with invalid UTF-8 is one U+FFFD
  bool fix_ = false;
  std::vector<int32_t> avoid_;

  std::unique_ptr<ChatModel::StateBox> state_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  bool has_logits_ = false;
  std::array<Snapshot, kSnapCount> snaps_;

  Sampler sampler_;
  SamplerRng rng_;
  RepetitionPenalty penalty_;
  std::string pending_, reply_bytes_;
  TurnStats stats_;
  std::atomic<bool> interrupt_{false};
  bool last_interrupted_ = false;
};

}  // namespace corvid::chat
