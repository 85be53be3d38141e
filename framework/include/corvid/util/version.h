#pragma once
namespace corvid {
const char* version_string();
}  // namespace corvid
