// Where corvid-chat and corvid-bench look for the files a user did not name.
#pragma once

#include <string>

namespace corvid::chat {

// The folder of the running executable (/proc/self/exe), "." if unknown.
std::string executable_dir();

// <exe>/../share/corvid/<rel>: the build tree and an install prefix alike
// (demo/demo.safetensors, configs/questions.txt, ...).
std::string shared_data_path(const std::string& rel);

// The tokenizer beside a model, chosen as ChatRWKV's chat.py does: "world/" or
// "-World-" in the model path (or a 65536-row embedding) means the World
// vocabulary rwkv_vocab_v20230424.txt, otherwise 20B_tokenizer.json. Throws
// corvid::Error naming the model and both file names when neither is there.
std::string tokenizer_beside(const std::string& model_path, int n_vocab);

}  // namespace corvid::chat
