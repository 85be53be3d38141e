// What a checkpoint file is, in words: corvid-inspect FILE (and, if the lead
// wires it, corvid-run --inspect FILE).
#pragma once

#include <string>

namespace corvid {

// Multi-line report: format, file size, architecture and sizes, tensor count,
// dtypes (tensors and bytes per dtype), total tensor bytes; for ChatRWKV-
// converted .pth files their stored strategy; for Corvid-converted files the
// stored strategy, RESCALE_LAYER, plan (per stage: backend, layout, slots,
// bytes) and the source file's name, size and XXH64.
// Throws Error (one line naming the file) when the file cannot be read or a
// converted file fails its checks.
std::string inspect_checkpoint(const std::string& path);

}  // namespace corvid
