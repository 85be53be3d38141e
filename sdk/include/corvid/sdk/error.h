// Errors crossing the plugin boundary.
//
// Plugins report failures by throwing corvid::Error (or any std::exception). The
// message must be one line and say what was wrong and where: a file name, a
// tensor name, a layer, the expected value. The apps print it as is.
#pragma once

#include <stdexcept>
#include <string>

namespace corvid {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace corvid
