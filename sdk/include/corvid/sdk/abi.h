// Corvid plugin ABI: the one number a plugin and the framework must agree on.
//
// Every plugin exports a single C-linkage function, `corvid_plugin_entry`, that
// returns a pointer to a static `corvid::PluginEntry` (see plugin.h). The
// framework reads `abi_version` (always the first field) before touching anything
// else and refuses the plugin when it differs from CORVID_ABI_VERSION.
//
// Bump CORVID_ABI_VERSION whenever any class or struct in sdk/ changes layout or a
// virtual function is added, removed or reordered.
//
// C++ types (std::string, std::vector, exceptions, virtual classes) do cross the
// boundary: plugins must be built with a compiler using the same C++ ABI as the
// framework (GCC >= 5 / Clang with libstdc++'s "cxx11" ABI). This is the same
// contract every C++ plugin system on Linux relies on; the C-linkage entry point
// and the version number are what make a mismatch a clear error instead of a crash.
#pragma once

#include <cstdint>

#define CORVID_ABI_VERSION 2u

// The exported symbol name. Kept as a macro so the loader and the plugins agree.
#define CORVID_PLUGIN_ENTRY_SYMBOL "corvid_plugin_entry"

#if defined(_WIN32)
#define CORVID_PLUGIN_EXPORT extern "C" __declspec(dllexport)
#else
#define CORVID_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))
#endif
