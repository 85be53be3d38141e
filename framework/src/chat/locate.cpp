#include "corvid/chat/locate.h"

#include <filesystem>

#include "corvid/sdk/error.h"

namespace fs = std::filesystem;

namespace corvid::chat {

std::string executable_dir() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

std::string shared_data_path(const std::string& rel) {
  return (fs::path(executable_dir()) / ".." / "share" / "corvid" / rel).lexically_normal().string();
}

std::string tokenizer_beside(const std::string& model, int n_vocab) {
  fs::path dir = fs::path(model).parent_path();
  if (dir.empty()) dir = ".";
  const bool world =
      model.find("world/") != std::string::npos || model.find("-World-") != std::string::npos || n_vocab == 65536;
  const fs::path neox = dir / "20B_tokenizer.json", wv = dir / "rwkv_vocab_v20230424.txt";
  std::error_code ec;
  const bool have_neox = fs::exists(neox, ec), have_world = fs::exists(wv, ec);
  if (world && have_world) return wv.string();
  if (!world && have_neox) return neox.string();
  if (have_neox != have_world) return (have_neox ? neox : wv).string();
  throw Error(model + ": no tokenizer beside the model; give --tokenizer FILE (20B_tokenizer.json for RWKV-4 "
              "Pile/Raven models, rwkv_vocab_v20230424.txt for World models; both are in the ChatRWKV repository)");
}

}  // namespace corvid::chat
