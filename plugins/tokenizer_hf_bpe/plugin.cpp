// Plugin entry for Hugging Face byte-level BPE tokenizer.json files.
#include "corvid/sdk/plugin.h"
#include "hf_bpe_tokenizer.h"

namespace {

corvid::Tokenizer* create_hf_bpe_tokenizer(const std::string& path) {
  return corvid::hf_bpe::HfBpeTokenizer::from_file(path);
}

const corvid::ServedPair kServed[] = {{"tokenizer", "hf_bpe"}};

const corvid::PluginEntry kEntry = {
    CORVID_ABI_VERSION,
    sizeof(corvid::PluginEntry),
    corvid::PluginKind::Tokenizer,
    "tokenizer_hf_bpe",
    "0.1.0",
    "Hugging Face tokenizer.json, byte-level BPE (GPT-NeoX 20B): NFC, GPT-2 regex, merges, added tokens",
    kServed,
    1,
    nullptr,
    &create_hf_bpe_tokenizer,
    nullptr,
};

}  // namespace

CORVID_DEFINE_PLUGIN(kEntry)
