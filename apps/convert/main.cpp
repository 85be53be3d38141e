// corvid-convert: pre-transform a checkpoint's weights for one strategy into a
// memory-mappable safetensors file that corvid-run/-chat/-bench load without
// per-weight work (docs/convert.md).
//
//   corvid-convert --in RWKV-4-Pile-1B5.pth --out 1b5-cpu-fp32i8.safetensors --strategy "cpu fp32i8"
//   corvid-convert --in model.pth --out model-split.safetensors --config configs/cpu-fp32i8.xml
//
// The output appears only when complete (temporary file in the target folder,
// fsync, rename). Ctrl-C (SIGINT) or SIGTERM stops at the next tensor and
// removes the temporary file; a second Ctrl-C removes it and exits at once.
#include <boost/program_options.hpp>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "corvid/convert/convert.h"
#include "corvid/sdk/error.h"
#include "corvid/strategy/config.h"
#include "corvid/strategy/plan.h"
#include "corvid/util/version.h"

namespace po = boost::program_options;
using namespace corvid;

namespace {

// Signal handling state. A handler can only touch lock-free atomics and
// async-signal-safe calls, hence the fixed buffer for the temporary path.
std::atomic<int> g_stop{0};
std::atomic<bool> g_temp_valid{false};
char g_temp_path[4096];

extern "C" void on_signal(int sig) {
  if (g_stop.load() != 0) {  // second signal: clean up and leave now
    if (g_temp_valid.load()) ::unlink(g_temp_path);
    static const char msg[] = "\ncorvid-convert: interrupted again, temporary file removed\n";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(128 + sig);
  }
  g_stop.store(sig);
  static const char msg[] = "\ncorvid-convert: stopping after the current tensor (again to quit at once)\n";
  ssize_t ignored = ::write(2, msg, sizeof msg - 1);
  (void)ignored;
}

void install_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
}

std::string format_duration(double s) {
  if (!(s >= 0) || s > 359999) return "--:--";
  int t = int(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%d:%02d", t / 60, t % 60);
  return buf;
}

// A progress bar with bytes, rate and ETA on a terminal; one plain line per
// 10% otherwise (logs, CI).
class Progress {
 public:
  explicit Progress(bool tty) : tty_(tty), t0_(std::chrono::steady_clock::now()) {}

  void update(uint64_t done, uint64_t total) {
    const auto now = std::chrono::steady_clock::now();
    const double el = std::chrono::duration<double>(now - t0_).count();
    const double frac = total ? double(done) / double(total) : 1.0;
    const double rate = el > 0 ? double(done) / el : 0;
    const std::string eta = rate > 0 && done < total ? format_duration(double(total - done) / rate) : "0:00";
    if (tty_) {
      if (done < total && std::chrono::duration<double>(now - last_).count() < 0.1) return;
      last_ = now;
      const int width = 30, fill = int(frac * width);
      std::string bar = std::string(size_t(fill), '#') + std::string(size_t(width - fill), '.');
      std::fprintf(stderr, "\r[%s] %3d%%  %s / %s  %s/s  ETA %s   ", bar.c_str(), int(frac * 100), format_bytes(done).c_str(),
                   format_bytes(total).c_str(), format_bytes(uint64_t(rate)).c_str(), eta.c_str());
      std::fflush(stderr);
      drawn_ = true;
    } else {
      const int decile = int(frac * 10);
      if (decile <= last_decile_) return;
      last_decile_ = decile;
      std::fprintf(stderr, "converted %s / %s (%d%%), %s elapsed, ETA %s\n", format_bytes(done).c_str(),
                   format_bytes(total).c_str(), int(frac * 100), format_duration(el).c_str(), eta.c_str());
    }
  }

  void end() {
    if (tty_ && drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  bool tty_;
  bool drawn_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point t0_, last_{};
};

}  // namespace

int main(int argc, char** argv) {
  std::string in, out, strategy, config;
  std::vector<std::string> plugin_dirs;
  po::options_description desc("corvid-convert options");
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("version", "print the version")
    ("in,i", po::value(&in), "input checkpoint: .pth (torch.save, raw weights) or .safetensors")
    ("out,o", po::value(&out), "output file (safetensors; written atomically)")
    ("strategy,s", po::value(&strategy), "strategy the file is for, e.g. \"cpu fp32i8\", \"cpu fp32i8 *6 -> cpu fp32\"")
    ("config,c", po::value(&config), "XML pipeline config instead of --strategy (also gives <model> and plugin dirs)")
    ("plugin-dir", po::value(&plugin_dirs)->composing(), "extra plugin directory (repeatable)")
    ("quiet,q", "print nothing but errors");
  // clang-format on
  Progress* progress_ptr = nullptr;
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << "Usage: corvid-convert --in MODEL --out FILE (--strategy STR | --config FILE) [--plugin-dir D] [--quiet]\n\n"
                   "Writes the weights as the strategy's backends keep them in memory (transposed, cast, quantised),\n"
                   "so that loading FILE is a memory map plus a header check. See docs/convert.md.\n\n"
                << desc << "\n";
      return 0;
    }
    if (vm.count("version")) { std::cout << "corvid-convert " << version_string() << "\n"; return 0; }
    const bool quiet = vm.count("quiet") > 0;

    ConvertOptions o;
    RunConfig cfg;
    StrategySpec parsed;
    if (!config.empty()) {
      cfg = load_run_config(config);
      if (in.empty()) in = cfg.model;
      for (const auto& d : cfg.plugin_dirs) plugin_dirs.push_back(d);
      if (strategy.empty()) {
        if (!cfg.strategy) throw Error(config + ": no <pipeline> and no --strategy given");
        o.spec = &*cfg.strategy;
        o.rescale_override = cfg.rescale_layer;
      }
    }
    if (in.empty()) throw Error("no input: give --in MODEL");
    if (out.empty()) throw Error("no output: give --out FILE");
    if (!o.spec) {
      if (strategy.empty()) throw Error("no strategy: give --strategy STR or --config FILE");
      parsed = parse_strategy(strategy);
      o.spec = &parsed;
    }
    o.in_path = in;
    o.out_path = out;
    o.plugin_dirs = plugin_dirs;
    o.stop_signal = &g_stop;
    o.temp_file_changed = [](const std::string& p) {
      g_temp_valid.store(false);
      if (!p.empty() && p.size() < sizeof g_temp_path) {
        std::memcpy(g_temp_path, p.c_str(), p.size() + 1);
        g_temp_valid.store(true);
      }
    };
    Progress progress(::isatty(2) == 1);
    if (!quiet) {
      progress_ptr = &progress;
      o.progress = [&](uint64_t d, uint64_t t) { progress.update(d, t); };
      o.log = [&](const std::string& s) {
        progress.end();
        std::cerr << s << "\n";
      };
    }
    install_handlers();

    ConvertResult r = convert_checkpoint(o);
    progress.end();
    if (!quiet) {
      std::cout << "Wrote " << out << ": " << r.n_tensors << " tensors, " << format_bytes(r.file_bytes) << " for strategy \""
                << r.plan.strategy << "\" (RESCALE_LAYER " << r.plan.rescale_layer << ") in " << format_duration(r.seconds)
                << "; source xxh64 " << r.source_xxh64 << "\n";
    }
    return 0;
  } catch (const po::error& e) {
    std::cerr << "corvid-convert: " << e.what() << " (see --help)\n";
    return 1;
  } catch (const std::exception& e) {
    if (progress_ptr) progress_ptr->end();
    std::cerr << "corvid-convert: " << e.what() << "\n";
    return g_stop.load() ? 128 + g_stop.load() : 1;
  }
}
