// The terminal side of corvid-chat: line input (libedit with history when stdin
// is a terminal, plain lines when it is piped) and Ctrl-C handling.
//
// Ctrl-C while a command runs sets the session's interrupt flag (a streaming
// reply stops at the next token). Ctrl-C at the input prompt (or anywhere
// outside a command), or a second Ctrl-C during one, asks to quit. Ctrl-D quits.
#pragma once

#include <atomic>
#include <optional>
#include <string>

namespace corvid_chat {

class Terminal {
 public:
  // `interrupt` is the session's flag; the handler sets it on Ctrl-C.
  explicit Terminal(std::atomic<bool>* interrupt);
  ~Terminal();

  bool interactive() const { return interactive_; }
  // One line without its newline; nullopt on end of input, Ctrl-D or a quit request.
  std::optional<std::string> read_line(const std::string& prompt);
  // Whether the user asked to quit (Ctrl-C at the prompt or twice in a row).
  bool quit_requested() const;
  // Around each command: inside, Ctrl-C interrupts instead of quitting.
  void turn_started();
  void turn_finished();

 private:
  bool interactive_ = false;
};

}  // namespace corvid_chat
