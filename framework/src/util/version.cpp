// Library version, for --version output.
namespace corvid {
const char* version_string() { return CORVID_VERSION_STRING; }
}  // namespace corvid
