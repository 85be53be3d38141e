// Choosing and loading a tokenizer file through the tokenizer plugins.
//
// Two kinds exist today: "hf_bpe" (a Hugging Face tokenizer.json, e.g. the
// GPT-NeoX 20B_tokenizer.json of RWKV-4 Pile/Raven) and "rwkv_world" (the RWKV
// World vocabulary, rwkv_vocab_v20230424.txt, of v5/v6/v7 models).
#pragma once

#include <memory>
#include <string>

#include "corvid/plugins/registry.h"
#include "corvid/sdk/tokenizer.h"

namespace corvid {

// The kind of tokenizer file at `path`, judged from its first bytes: a JSON
// object -> "hf_bpe"; lines "<id> <python literal> <length>" -> "rwkv_world".
// Throws Error naming the file when it cannot be read or is neither.
std::string detect_tokenizer_kind(const std::string& path);

// Loads `path` with the plugin serving `kind` (detected when empty). Errors
// name the file (and line, for malformed files).
std::shared_ptr<Tokenizer> load_tokenizer(const PluginRegistry& registry, const std::string& path,
                                          const std::string& kind = "");

}  // namespace corvid
