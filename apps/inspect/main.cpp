// corvid-inspect: what a checkpoint is (format, architecture, sizes, dtypes,
// and for converted files the stored plan and source checksum).
//
//   corvid-inspect model.pth
//   corvid-inspect model-cpu-fp32i8.safetensors
#include <boost/program_options.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "corvid/convert/inspect.h"
#include "corvid/util/version.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::vector<std::string> files;
  po::options_description desc("corvid-inspect options");
  desc.add_options()("help,h", "show this help")("version", "print the version");
  po::options_description hidden;
  hidden.add_options()("file", po::value(&files));
  po::positional_options_description pos;
  pos.add("file", -1);
  po::options_description all;
  all.add(desc).add(hidden);
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << "Usage: corvid-inspect FILE...\n\nPrints what each checkpoint is: format, architecture, sizes, dtypes; "
                   "for Corvid-converted files also the stored plan and the source checksum.\n\n"
                << desc << "\n";
      return 0;
    }
    if (vm.count("version")) { std::cout << "corvid-inspect " << corvid::version_string() << "\n"; return 0; }
    if (files.empty()) throw std::runtime_error("no file given (see --help)");
    int rc = 0;
    for (size_t i = 0; i < files.size(); ++i) {
      if (i) std::cout << "\n";
      try {
        std::cout << corvid::inspect_checkpoint(files[i]) << std::flush;
      } catch (const std::exception& e) {
        std::cerr << "corvid-inspect: " << e.what() << "\n";
        rc = 1;
      }
    }
    return rc;
  } catch (const po::error& e) {
    std::cerr << "corvid-inspect: " << e.what() << " (see --help)\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "corvid-inspect: " << e.what() << "\n";
    return 1;
  }
}
