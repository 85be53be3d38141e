#include "terminal.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <editline/readline.h>

namespace corvid_chat {

namespace {

// Signal-handler state: only lock-free atomics are touched in the handler.
std::atomic<bool>* g_interrupt = nullptr;
std::atomic<int> g_sigint_count{0};
std::atomic<bool> g_busy{false};  // a command is running (a reply may be streaming)
std::atomic<bool> g_quit{false};

void on_sigint(int) {
  int n = ++g_sigint_count;
  // Outside a command (at the prompt, or between commands) Ctrl-C quits; during
  // one it stops the reply, and a second one quits.
  if (!g_busy.load() || n >= 2) g_quit = true;
  if (g_interrupt) g_interrupt->store(true);
}

// libedit's character reader, replaced so a Ctrl-C at the prompt ends the
// read: the SIGINT handler is installed without SA_RESTART, so read() returns
// EINTR, and we report end of input when a quit was requested.
int getc_interruptible(FILE* f) {
  while (true) {
    unsigned char c;
    ssize_t n = read(fileno(f), &c, 1);
    if (n == 1) {
      if (c == 0x03) {  // Ctrl-C delivered as a character (terminal in raw mode)
        g_quit = true;
        return EOF;
      }
      return c;
    }
    if (n == 0) return EOF;
    if (errno == EINTR) {
      if (g_quit) return EOF;
      continue;
    }
    return EOF;
  }
}

}  // namespace

Terminal::Terminal(std::atomic<bool>* interrupt) {
  g_interrupt = interrupt;
  interactive_ = isatty(0) && isatty(1);
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns EINTR
  sigaction(SIGINT, &sa, nullptr);
  if (interactive_) {
    rl_catch_signals = 0;  // our handler, not libedit's (which re-raises to the process group)
    rl_getc_function = getc_interruptible;
    rl_initialize();
    using_history();
  }
}

Terminal::~Terminal() {
  signal(SIGINT, SIG_DFL);
  g_interrupt = nullptr;
}

std::optional<std::string> Terminal::read_line(const std::string& prompt) {
  if (g_quit) return std::nullopt;
  std::optional<std::string> out;
  if (interactive_) {
    char* line = readline(prompt.c_str());
    if (line) {
      out = std::string(line);
      if (*line) add_history(line);
      std::free(line);
    }
  } else {
    // Piped input: one message per line; the prompt and the line are echoed so
    // a transcript reads like the interactive session.
    std::cout << prompt << std::flush;
    std::string s;
    if (std::getline(std::cin, s)) {
      if (!s.empty() && s.back() == '\r') s.pop_back();
      std::cout << s << "\n" << std::flush;
      out = std::move(s);
    }
  }
  if (g_quit) return std::nullopt;
  return out;
}

bool Terminal::quit_requested() const { return g_quit.load(); }

void Terminal::turn_started() {
  g_sigint_count = 0;
  g_busy = true;
}

void Terminal::turn_finished() {
  g_busy = false;
  g_sigint_count = 0;
}

}  // namespace corvid_chat
