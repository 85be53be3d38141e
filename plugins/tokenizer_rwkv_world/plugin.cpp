// Plugin entry for the RWKV World tokenizer.
#include "corvid/sdk/plugin.h"
#include "world_tokenizer.h"

namespace {

corvid::Tokenizer* create_world_tokenizer(const std::string& path) {
  return corvid::world::WorldTokenizer::from_file(path);
}

const corvid::ServedPair kServed[] = {{"tokenizer", "rwkv_world"}};

const corvid::PluginEntry kEntry = {
    CORVID_ABI_VERSION,
    sizeof(corvid::PluginEntry),
    corvid::PluginKind::Tokenizer,
    "tokenizer_rwkv_world",
    "0.1.0",
    "RWKV World vocabulary (rwkv_vocab_v20230424.txt): greedy longest byte match",
    kServed,
    1,
    nullptr,
    &create_world_tokenizer,
    nullptr,
};

}  // namespace

CORVID_DEFINE_PLUGIN(kEntry)
