// The chat procedure of ChatRWKV v2/chat.py (rwkv-reference §7), step by step.
// Comments give the reference's names (run_rnn, save_all_stat, chat_pre, ...).
#include "corvid/chat/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "corvid/chat/text.h"
#include "corvid/sdk/error.h"

namespace corvid::chat {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// chat.py writes -999999999 into fp32 logits: that is -1e9 after rounding.
constexpr double kNever = -999999999.0;

std::string ascii_lower(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return r;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Python's float() on the option value: surrounding whitespace allowed, the
// whole text must be a number. Non-finite values are refused.
bool parse_number(std::string_view text, float& out) {
  std::string t(py_strip(text));
  if (t.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || !std::isfinite(v)) return false;
  out = float(v);
  return true;
}

std::string fmt(const char* f, double a, double b = 0, double c = 0, double d = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c, d);
  return buf;
}

}  // namespace

const char* snap_name(Snap s) {
  static const char* names[] = {"chat_init", "chat", "chat_pre", "gen_0", "gen_1"};
  return names[int(s)];
}

ChatSession::ChatSession(ChatModel& model, const Tokenizer& tok, std::shared_ptr<PromptTemplate> tpl,
                         ChatSettings settings, ChatOutput& out, PromptLoader loader)
    : model_(model),
      tok_(tok),
      tpl_(std::move(tpl)),
      settings_(std::move(settings)),
      out_(out),
      loader_(std::move(loader)),
      sampler_(size_t(model.n_vocab())),
      rng_(settings_.seed),
      penalty_(size_t(model.n_vocab())) {
  if (!tpl_) throw Error("chat: no prompt template");
  if (settings_.chunk_len <= 0) throw Error("chat: chunk length must be positive");
  settings_.edits.validate(size_t(model.n_vocab()));
  // END_OF_LINE and END_OF_TEXT from the tokenizer (187/0 for 20B, 11/0 for World).
  auto nl = tok_.encode("\n");
  if (nl.size() != 1) throw Error("chat: the tokenizer has no single token for \"\\n\" (needed for the newline bias)");
  eol_ = nl[0];
  eot_ = tok_.eot_id();
  auto dnl = tok_.encode("\n\n");
  double_nl_ = dnl.size() == 1 ? dnl[0] : -1;
  strict_decode_ = tok_.kind() == "rwkv_world";
  // fix_tokens: only for non-World vocabularies (chat.py decides by model name).
  fix_ = tpl_->fix_trailing_double_newline() && !strict_decode_ && double_nl_ >= 0;
  if (settings_.avoid_repeat) {
    for (const char* mark : {"\xEF\xBC\x8C", "\xEF\xBC\x9A", "\xEF\xBC\x9F", "\xEF\xBC\x81"}) {  // ，：？！
      auto t = tok_.encode(mark);
      if (t.size() == 1) avoid_.push_back(t[0]);
    }
  }
  for (int32_t id : {eol_, eot_})
    if (id < 0 || id >= model.n_vocab()) throw Error("chat: tokenizer id " + std::to_string(id) + " is outside the model's vocabulary");
  state_ = model_.new_state();
  logits_.assign(size_t(model_.n_vocab()), 0.0f);
  tokens_.reserve(4096);
  pending_.reserve(256);
  reply_bytes_.reserve(4096);
}

ChatSession::~ChatSession() = default;

// ---------------------------------------------------------------------------
// run_rnn, snapshots

void ChatSession::run_rnn(std::span<const int32_t> toks, double newline_adj, bool progress) {
  if (toks.empty()) return;
  for (int32_t t : toks)
    if (t < 0 || t >= model_.n_vocab()) throw Error("chat: token id " + std::to_string(t) + " is outside the model's vocabulary");
  tokens_.insert(tokens_.end(), toks.begin(), toks.end());
  const size_t n = toks.size(), chunk = size_t(settings_.chunk_len);
  for (size_t off = 0; off < n; off += chunk) {
    size_t len = std::min(chunk, n - off);
    model_.forward(toks.subspan(off, len), *state_, logits_.data());
    if (progress) out_.prefill_progress(off + len, n);
  }
  has_logits_ = true;
  // out[END_OF_LINE] += newline_adj, as a float32 tensor adds a Python float.
  logits_[size_t(eol_)] += float(newline_adj);
  if (std::find(avoid_.begin(), avoid_.end(), tokens_.back()) != avoid_.end())
    logits_[size_t(tokens_.back())] = float(kNever);
}

std::vector<int32_t> ChatSession::fix_tokens(std::vector<int32_t> t) const {
  // The models saw "\n\n" as two "\n" tokens; the tokenizer emits one token at the end.
  if (fix_ && !t.empty() && t.back() == double_nl_) {
    t.back() = eol_;
    t.push_back(eol_);
  }
  return t;
}

void ChatSession::save_snap(Snap s) {
  Snapshot& sn = snaps_[size_t(s)];
  sn.valid = true;
  sn.has_logits = has_logits_;
  sn.logits.assign(logits_.begin(), logits_.end());
  if (!sn.state) sn.state = model_.new_state();
  model_.copy_state(*state_, *sn.state);  // a deep copy: forward mutates the state
  sn.tokens.assign(tokens_.begin(), tokens_.end());
}

bool ChatSession::load_snap(Snap s) {
  const Snapshot& sn = snaps_[size_t(s)];
  if (!sn.valid) return false;
  has_logits_ = sn.has_logits;
  logits_.assign(sn.logits.begin(), sn.logits.end());
  model_.copy_state(*sn.state, *state_);
  tokens_.assign(sn.tokens.begin(), sn.tokens.end());
  return true;
}

std::vector<float> ChatSession::snapshot_state_data(Snap s) const {
  const Snapshot& sn = snaps_[size_t(s)];
  if (!sn.valid) throw Error(std::string("chat: no snapshot ") + snap_name(s));
  return model_.serialize_state(*sn.state);
}

void ChatSession::empty_state() {
  model_.reset_state(*state_);
  tokens_.clear();
  has_logits_ = false;
}

// ---------------------------------------------------------------------------
// Startup

bool ChatSession::start() {
  interrupt_ = false;
  empty_state();
  auto toks = fix_tokens(tok_.encode(tpl_->init_prompt()));
  auto t0 = Clock::now();
  const size_t n = toks.size(), chunk = size_t(settings_.chunk_len);
  for (size_t off = 0; off < n; off += chunk) {
    if (interrupt_) return false;
    size_t len = std::min(chunk, n - off);
    run_rnn(std::span<const int32_t>(toks).subspan(off, len), 0.0, false);
    out_.prefill_progress(off + len, n);
  }
  stats_ = TurnStats{n, seconds_since(t0), 0, 0, true};
  save_snap(Snap::ChatInit);
  save_snap(Snap::Chat);
  return true;
}

void ChatSession::feed_prompt_file(const std::string& path) {
  write("Loading prompt...\n");
  std::shared_ptr<PromptTemplate> t;
  try {
    t = loader_ ? loader_(path) : nullptr;
    if (!t) throw Error("no prompt loader");
  } catch (const std::exception& e) {
    write(std::string("Path error: ") + e.what() + "\n");
    return;
  }
  // Decision: a new prompt starts from an empty state and becomes chat_init.
  tpl_ = std::move(t);
  fix_ = tpl_->fix_trailing_double_newline() && !strict_decode_ && double_nl_ >= 0;
  start();
  write("Prompt set up.\n");
}

// ---------------------------------------------------------------------------
// Sampling step and the two generation loops

int32_t ChatSession::draw(const TurnParams& p) {
  if (!has_logits_) throw Error("chat: nothing has been fed yet, there are no logits to sample from");
  if (!settings_.edits.empty()) settings_.edits.apply(logits_);
  penalty_.apply(logits_, settings_.penalty);
  return sampler_.sample(logits_, p.sampling, rng_);
}

void ChatSession::reply(const TurnParams& p) {
  write(tpl_->bot_name() + tpl_->interface_str());
  penalty_.reset();
  pending_.clear();
  reply_bytes_.clear();
  bool seen_double_newline = false;
  auto t0 = Clock::now();
  size_t generated = 0;
  for (int i = 0; i < settings_.max_reply_tokens; ++i) {
    if (interrupt_) {
      last_interrupted_ = true;
      break;
    }
    // The newline bias for the logits this step's token produces (used at step i+1).
    double adj;
    if (i <= 0) adj = kNever;
    else if (i <= settings_.chat_len_short) adj = double(i - settings_.chat_len_short) / 10;
    else if (i <= settings_.chat_len_long) adj = 0;
    else adj = std::min(3.0, double(i - settings_.chat_len_long) * 0.25);  // must end the reply

    int32_t token = draw(p);
    penalty_.record(token, 1.0, settings_.penalty.decay);  // chat.py: every token counts 1
    run_rnn(std::span<const int32_t>(&token, 1), adj);
    logits_[size_t(eot_)] = float(kNever);  // disable <|endoftext|> (not for the first token: [quirk] kept)
    ++generated;

    std::string bytes = tok_.token_bytes(token);
    pending_ += bytes;
    reply_bytes_ += bytes;
    if (printable_now(pending_)) {
      write(pending_);
      pending_.clear();
    }
    // Stop once the decoded reply contains "\n\n" (it is printed and fed already).
    if (!seen_double_newline && reply_bytes_.find("\n\n", reply_bytes_.size() >= bytes.size() + 1 ? reply_bytes_.size() - bytes.size() - 1 : 0) != std::string::npos)
      seen_double_newline = true;
    if (seen_double_newline && (!strict_decode_ || utf8_valid(reply_bytes_))) break;
  }
  // Bytes never printable (an incomplete character at the very end) are dropped,
  // as the reference's printer drops them.
  pending_.clear();
  if (last_interrupted_) {
    // Decision: keep the partial reply and complete the separator so the next
    // turn starts exactly as after a finished reply.
    write(" [stopped]\n\n");
    std::string missing = reply_bytes_.size() && reply_bytes_.back() == '\n' ? "\n" : "\n\n";
    auto sep = missing == "\n" ? std::vector<int32_t>{eol_} : fix_tokens(tok_.encode(missing));
    run_rnn(sep, 0.0);
    logits_[size_t(eot_)] = float(kNever);
  }
  stats_.decode_tokens = generated;
  stats_.decode_seconds = seconds_since(t0);
  stats_.valid = true;
  save_snap(Snap::Chat);
}

void ChatSession::free_generation(const TurnParams& p, double newline_adj_every) {
  penalty_.reset();
  pending_.clear();
  auto t0 = Clock::now();
  size_t generated = 0;
  for (int i = 0; i < settings_.free_gen_len + 100; ++i) {
    if (interrupt_) {
      last_interrupted_ = true;
      break;
    }
    int32_t token = draw(p);
    if (token == eot_) break;
    penalty_.record(token, 1.0, settings_.penalty.decay);
    run_rnn(std::span<const int32_t>(&token, 1), newline_adj_every);
    ++generated;
    pending_ += tok_.token_bytes(token);
    if (printable_now(pending_)) {
      write(pending_);
      pending_.clear();
      if (i >= settings_.free_gen_len) break;
    }
  }
  pending_.clear();  // never-printable trailing bytes are dropped (as the reference does)
  write(last_interrupted_ ? " [stopped]\n\n" : "\n\n");
  stats_.decode_tokens = generated;
  stats_.decode_seconds = seconds_since(t0);
  stats_.valid = true;
  save_snap(Snap::Gen1);
}

// ---------------------------------------------------------------------------
// Input handling (chat.py on_message)

ChatSession::Result ChatSession::handle(std::string_view line) {
  interrupt_ = false;
  last_interrupted_ = false;
  if (py_strip(line).empty()) {
    write("Error: please say something\n");
    return Result::Empty;
  }
  std::string msg(py_strip(py_replace(line, "\\n", "\n")));

  // Per-message options, anywhere in the message.
  TurnParams p{settings_.sampling};
  struct Opt { const char* key; float* value; };
  for (Opt o : {Opt{"-temp=", &p.sampling.temperature}, Opt{"-top_p=", &p.sampling.top_p}}) {
    size_t k = msg.find(o.key);
    if (k == std::string::npos) continue;
    size_t vb = k + std::string_view(o.key).size();
    size_t ve = msg.find(' ', vb);
    std::string text = msg.substr(vb, ve == std::string::npos ? std::string::npos : ve - vb);
    if (!parse_number(text, *o.value)) {
      write(std::string("Error: ") + o.key + " needs a number, got '" + text + "'\n");
      return Result::Error;
    }
    msg.erase(k, vb - k + text.size());
  }
  if (p.sampling.temperature <= 0.2f) p.sampling.temperature = 0.2f;
  if (p.sampling.temperature >= 5.0f) p.sampling.temperature = 5.0f;
  if (p.sampling.top_p <= 0.0f) p.sampling.top_p = 0.0f;
  msg = std::string(py_strip(msg));
  const std::string lower = ascii_lower(msg);
  auto arg = [&](size_t skip) { return std::string(py_strip(std::string_view(msg).substr(std::min(skip, msg.size())))); };
  auto prefill = [&](auto&& feed) {
    auto t0 = Clock::now();
    size_t before = tokens_.size();
    feed();
    stats_ = TurnStats{};
    stats_.prefill_tokens = tokens_.size() >= before ? tokens_.size() - before : tokens_.size();
    stats_.prefill_seconds = seconds_since(t0);
  };

  if (lower == "+reset") {
    load_snap(Snap::ChatInit);
    save_snap(Snap::Chat);
    write(tpl_->bot_name() + tpl_->interface_str() + " Chat reset.\n\n");
    return Result::Done;
  }
  if (starts_with(lower, "+prompt ")) {
    feed_prompt_file(arg(8));
    return Result::Done;
  }
  if (lower == "+help") {
    write(help_text());
    return Result::Done;
  }
  if (lower == "+stats") {
    if (!stats_.valid) {
      write("No turn yet.\n");
    } else {
      auto rate = [](size_t n, double s) { return s > 0 ? double(n) / s : 0.0; };
      write(fmt("Last turn: prefill %.0f tokens in %.3f s (%.1f tokens/s), ", double(stats_.prefill_tokens),
                stats_.prefill_seconds, rate(stats_.prefill_tokens, stats_.prefill_seconds)) +
            fmt("decode %.0f tokens in %.3f s (%.1f tokens/s)\n", double(stats_.decode_tokens), stats_.decode_seconds,
                rate(stats_.decode_tokens, stats_.decode_seconds)));
    }
    return Result::Done;
  }
  if (lower == "+save" || lower == "+load" || starts_with(lower, "+save ") || starts_with(lower, "+load ")) {
    std::string path = arg(6);
    bool saving = starts_with(lower, "+save");
    if (path.empty()) {
      write(std::string("Error: usage: ") + (saving ? "+save FILE" : "+load FILE") + "\n");
      return Result::Error;
    }
    try {
      if (saving) {
        save(path);
        write("Session saved to " + path + " (" + std::to_string(tokens_.size()) + " tokens).\n");
      } else {
        load(path);
        write("Session loaded from " + path + " (" + std::to_string(tokens_.size()) + " tokens).\n");
      }
    } catch (const std::exception& e) {
      write(std::string("Error: ") + e.what() + "\n");
      return Result::Error;
    }
    return Result::Done;
  }

  const bool is_gen = starts_with(lower, "+gen "), is_i = starts_with(lower, "+i "), is_qa = starts_with(lower, "+qa "),
             is_qq = starts_with(lower, "+qq ");
  if (is_gen || is_i || is_qa || is_qq || lower == "+++" || lower == "++") {
    if (is_gen || is_i || is_qq) {
      std::string prompt;
      if (is_gen) prompt = tpl_->free_prompt("gen", arg(5));
      else if (is_qq) prompt = tpl_->free_prompt("qq", arg(4));
      else prompt = tpl_->free_prompt("instruct", py_replace(py_replace(arg(3), "\r\n", "\n"), "\n\n", "\n"));
      prefill([&] {
        empty_state();
        run_rnn(tok_.encode(prompt), 0.0);
      });
      save_snap(Snap::Gen0);
    } else if (is_qa) {
      prefill([&] {
        load_snap(Snap::ChatInit);
        run_rnn(tok_.encode(tpl_->chat_turn(arg(4))), 0.0);
      });
      save_snap(Snap::Gen0);
    } else if (lower == "+++") {
      if (!load_snap(Snap::Gen1)) return Result::Done;
      save_snap(Snap::Gen0);
      stats_ = TurnStats{};
    } else {
      if (!load_snap(Snap::Gen0)) return Result::Done;
      stats_ = TurnStats{};
    }
    free_generation(p, is_qa ? -2.0 : 0.0);
    return Result::Done;
  }

  if (lower == "+") {
    if (!load_snap(Snap::ChatPre)) return Result::Done;
    stats_ = TurnStats{};
  } else {
    std::string text = py_replace(py_replace(msg, "\r\n", "\n"), "\n\n", "\n");
    prefill([&] {
      load_snap(Snap::Chat);
      run_rnn(tok_.encode(tpl_->chat_turn(text)), kNever);
    });
    save_snap(Snap::ChatPre);
  }
  reply(p);
  return Result::Done;
}

// ---------------------------------------------------------------------------
// Texts

std::string ChatSession::help_text() const {
  const std::string u = tpl_->user_name(), b = tpl_->bot_name();
  return "Commands:\n"
         "  say something       chat with " + b + " (type \\n for a new line)\n"
         "  +                   another reply to your last message\n"
         "  +reset              forget the conversation (back to the init prompt)\n"
         "  +gen TEXT           free generation from TEXT (no chat context)\n"
         "  +i TEXT             an instruction, answered in the Alpaca format\n"
         "  +qq TEXT            a question in the \"Q: ... A:\" format (no chat context)\n"
         "  +qa TEXT            a question to " + b + " right after the init prompt\n"
         "  +++                 continue the last free generation\n"
         "  ++                  retry the last free generation\n"
         "  +prompt FILE        start over with another prompt file (ChatRWKV .py format)\n"
         "  +save FILE          save the conversation (state, tokens, sampler) to FILE\n"
         "  +load FILE          load a conversation saved with +save (same model)\n"
         "  +stats              speed of the last turn (prefill and decode tokens/s)\n"
         "  +help               this text\n"
         "  -temp=X -top_p=Y    anywhere in a message: sampling for that message only\n"
         "  Ctrl-C              stop the current reply (it is kept); at the prompt, or twice, quit\n"
         "  Ctrl-D              quit\n"
         "Remember to +reset now and then to clean up " + b + "'s memory of " + u + ".\n";
}

std::string ChatSession::init_display() const {
  const Snapshot& s = snaps_[size_t(Snap::ChatInit)];
  std::string text = tok_.decode(s.tokens);
  return utf8_sanitize(py_replace(text, "\n\n" + tpl_->bot_name(), "\n" + tpl_->bot_name()));
}

}  // namespace corvid::chat
