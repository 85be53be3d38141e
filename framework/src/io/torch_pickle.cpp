// The restricted unpickler (see torch_pickle.h). Opcode semantics follow
// Python's Lib/pickletools.py documentation; only the subset torch.save emits
// for a state dict is accepted, anything else is an error naming the opcode.
#include "corvid/io/torch_pickle.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "corvid/sdk/error.h"
#include "corvid/sdk/tensor.h"

namespace corvid {
namespace {

// Allowed globals. Everything else is refused at the GLOBAL opcode itself.
enum class Callable { OrderedDict, RebuildTensorV2, RebuildParameter, StorageType };

struct StorageTypeInfo {
  const char* name;
  bool supported;
  DType dtype;
};
constexpr StorageTypeInfo kStorageTypes[] = {
    {"FloatStorage", true, DType::F32},     {"HalfStorage", true, DType::F16},
    {"BFloat16Storage", true, DType::BF16}, {"ByteStorage", true, DType::U8},
    {"CharStorage", true, DType::I8},       {"IntStorage", true, DType::I32},
    {"LongStorage", true, DType::I64},
    // Known torch storages without a Corvid dtype: accepted by the parser so the
    // error can say "unsupported dtype" for the tensor rather than "foreign global".
    {"DoubleStorage", false, DType::F32},   {"ShortStorage", false, DType::F32},
    {"BoolStorage", false, DType::F32},     {"ComplexFloatStorage", false, DType::F32},
    {"ComplexDoubleStorage", false, DType::F32},
};

enum class Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor };

struct Value;
using VP = std::shared_ptr<Value>;

struct Value {
  Kind kind = Kind::None;
  int64_t i = 0;          // Bool, Int
  double f = 0;           // Float
  std::string s;          // Str; Global: "module.name"; Storage: key
  std::vector<VP> items;  // Tuple, List
  std::vector<std::pair<VP, VP>> dict;          // Dict, in insertion order
  std::unordered_map<std::string, size_t> str_index;  // Dict: str key -> position
  Callable callable = Callable::OrderedDict;    // Global
  std::string storage_type;                     // Global(StorageType), Storage
  int64_t numel = 0;                            // Storage
  std::shared_ptr<TorchTensorRecord> tensor;    // Tensor

  Value() = default;
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  // Releases children iteratively: a hostile pickle can nest a million tuples
  // in a few KB, and the default recursive destruction would overflow the stack.
  ~Value() {
    std::vector<VP> pending;
    auto take = [&pending](Value& v) {
      for (VP& c : v.items) pending.push_back(std::move(c));
      for (auto& [k, c] : v.dict) {
        pending.push_back(std::move(k));
        pending.push_back(std::move(c));
      }
      v.items.clear();
      v.dict.clear();
    };
    take(*this);
    while (!pending.empty()) {
      VP v = std::move(pending.back());
      pending.pop_back();
      if (v && v.use_count() == 1) take(*v);  // last owner: empty it before it dies
    }
  }
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

// Strings from the file shown in one-line errors: control bytes become '?'.
std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) out += (c >= 0x20 && c != 0x7f) ? c : '?';
  return out;
}

// Hostile-input limits; far beyond any real state dict's pickle.
constexpr size_t kMaxStack = size_t(1) << 22;
constexpr size_t kMaxMemo = size_t(1) << 22;

class Unpickler {
 public:
  Unpickler(const uint8_t* d, size_t n, const std::string& where) : d_(d), n_(n), where_(where) {}

  VP run() {
    while (true) {
      op_pos_ = pos_;
      uint8_t op = u8();
      switch (op) {
        case 0x80: {  // PROTO
          uint8_t v = u8();
          if (v < 2 || v > 5) fail("pickle protocol " + std::to_string(v), "protocol 2 to 5");
          break;
        }
        case 0x95: need(8); pos_ += 8; break;  // FRAME: a length hint only
        case '.': {  // STOP
          if (stack_.empty()) fail("STOP with an empty stack", "a state dict on the stack");
          return stack_.back();
        }
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '}': push(make(Kind::Dict)); break;          // EMPTY_DICT
        case ']': push(make(Kind::List)); break;          // EMPTY_LIST
        case ')': push(make(Kind::Tuple)); break;         // EMPTY_TUPLE
        case 't': {                                       // TUPLE
          VP t = make(Kind::Tuple);
          t->items = pop_mark();
          push(t);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          size_t k = op - 0x84;
          if (stack_.size() - floor() < k) fail("TUPLE" + std::to_string(k) + " with too few items on the stack", std::to_string(k) + " items");
          VP t = make(Kind::Tuple);
          t->items.assign(stack_.end() - long(k), stack_.end());
          stack_.resize(stack_.size() - k);
          push(t);
          break;
        }
        case 'l': {  // LIST
          VP t = make(Kind::List);
          t->items = pop_mark();
          push(t);
          break;
        }
        case 'a': {  // APPEND
          VP v = pop();
          VP& l = top();
          if (l->kind != Kind::List) fail("APPEND to a " + std::string(kind_name(l->kind)), "a list");
          l->items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<VP> vs = pop_mark();
          VP& l = top();
          if (l->kind != Kind::List) fail("APPENDS to a " + std::string(kind_name(l->kind)), "a list");
          l->items.insert(l->items.end(), vs.begin(), vs.end());
          break;
        }
        case 'd': {  // DICT
          std::vector<VP> kv = pop_mark();
          VP dct = make(Kind::Dict);
          set_items(dct, kv);
          push(dct);
          break;
        }
        case 's': {  // SETITEM
          VP v = pop();
          VP k = pop();
          set_items(top(), {k, v});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<VP> kv = pop_mark();
          set_items(top(), kv);
          break;
        }
        case 'q': memo_put(u8()); break;    // BINPUT
        case 'r': memo_put(u32()); break;   // LONG_BINPUT
        case 0x94: memo_put(uint32_t(memo_.size())); break;  // MEMOIZE
        case 'h': memo_get(u8()); break;    // BINGET
        case 'j': memo_get(u32()); break;   // LONG_BINGET
        case 'J': push(make_int(int32_t(u32()))); break;  // BININT
        case 'K': push(make_int(u8())); break;            // BININT1
        case 'M': push(make_int(u16())); break;           // BININT2
        case 0x8a: push(make_int(long_n(u8()))); break;   // LONG1
        case 0x8b: push(make_int(long_n(u32()))); break;  // LONG4
        case 'G': {  // BINFLOAT (big-endian double)
          need(8);
          uint64_t b = 0;
          for (int k = 0; k < 8; ++k) b = b << 8 | d_[pos_ + k];
          pos_ += 8;
          VP v = make(Kind::Float);
          std::memcpy(&v->f, &b, 8);
          push(v);
          break;
        }
        case 'N': push(make(Kind::None)); break;
        case 0x88: case 0x89: {  // NEWTRUE / NEWFALSE
          VP v = make(Kind::Bool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'X': push(make_str(u32())); break;     // BINUNICODE
        case 0x8c: push(make_str(u8())); break;     // SHORT_BINUNICODE
        case 0x8d: push(make_str(u64())); break;    // BINUNICODE8
        case 'c': {  // GLOBAL "module\nname\n"
          std::string module = line(), name = line();
          push(make_global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          VP name = pop(), module = pop();
          if (module->kind != Kind::Str || name->kind != Kind::Str) fail("STACK_GLOBAL with non-string operands", "two strings");
          push(make_global(module->s, name->s));
          break;
        }
        case 'Q': push(persistent_load(pop())); break;  // BINPERSID
        case 'R': {                                     // REDUCE
          VP args = pop();
          VP fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': {  // BUILD: only OrderedDict's instance dict (state_dict()._metadata), discarded
          VP state = pop();
          VP& obj = top();
          if (obj->kind != Kind::Dict || (state->kind != Kind::Dict && state->kind != Kind::None))
            fail("BUILD on a " + std::string(kind_name(obj->kind)) + " with a " + kind_name(state->kind),
                 "only an OrderedDict's attribute dict");
          break;
        }
        case '0': pop(); break;  // POP
        case '1': pop_mark(); break;  // POP_MARK
        case '2': push(top()); break;  // DUP
        default: {
          char b[8];
          std::snprintf(b, sizeof b, "0x%02x", op);
          fail("unsupported pickle opcode " + std::string(b), "one of the opcodes torch.save writes for a state dict");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what, const std::string& expected) const {
    throw Error(where_ + ": " + what + " at byte " + std::to_string(op_pos_) + ", expected " + expected);
  }

  void need(uint64_t k) const {
    if (k > n_ - pos_)
      throw Error(where_ + ": pickle truncated at byte " + std::to_string(op_pos_) + ", expected " + std::to_string(k) +
                  " more bytes before the end at byte " + std::to_string(n_));
  }
  uint8_t u8() { need(1); return d_[pos_++]; }
  uint16_t u16() { need(2); uint16_t v = uint16_t(d_[pos_] | d_[pos_ + 1] << 8); pos_ += 2; return v; }
  uint32_t u32() {
    need(4);
    uint32_t v = uint32_t(d_[pos_]) | uint32_t(d_[pos_ + 1]) << 8 | uint32_t(d_[pos_ + 2]) << 16 | uint32_t(d_[pos_ + 3]) << 24;
    pos_ += 4;
    return v;
  }
  uint64_t u64() { uint64_t lo = u32(); uint64_t hi = u32(); return lo | hi << 32; }
  std::string line() {
    size_t start = pos_;
    while (pos_ < n_ && d_[pos_] != '\n') ++pos_;
    if (pos_ >= n_)
      throw Error(where_ + ": pickle truncated at byte " + std::to_string(op_pos_) +
                  ", expected a newline-terminated GLOBAL name");
    std::string s(reinterpret_cast<const char*>(d_ + start), pos_ - start);
    ++pos_;
    return s;
  }
  int64_t long_n(uint64_t nbytes) {  // little-endian two's complement
    if (nbytes > 8) fail("integer of " + std::to_string(nbytes) + " bytes", "at most 8 bytes");
    need(nbytes);
    uint64_t v = 0;
    for (uint64_t k = 0; k < nbytes; ++k) v |= uint64_t(d_[pos_ + k]) << (8 * k);
    if (nbytes > 0 && nbytes < 8 && (d_[pos_ + nbytes - 1] & 0x80)) v |= ~uint64_t(0) << (8 * nbytes);
    pos_ += nbytes;
    return int64_t(v);
  }

  static VP make(Kind k) { VP v = std::make_shared<Value>(); v->kind = k; return v; }
  static VP make_int(int64_t i) { VP v = make(Kind::Int); v->i = i; return v; }
  VP make_str(uint64_t len) {
    need(len);
    VP v = make(Kind::Str);
    v->s.assign(reinterpret_cast<const char*>(d_ + pos_), size_t(len));
    pos_ += len;
    return v;
  }

  VP make_global(const std::string& module, const std::string& name) {
    VP g = make(Kind::Global);
    g->s = module + "." + name;
    if (module == "collections" && name == "OrderedDict") {
      g->callable = Callable::OrderedDict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      g->callable = Callable::RebuildTensorV2;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      g->callable = Callable::RebuildParameter;
    } else {
      bool storage = false;
      if (module == "torch")
        for (const auto& t : kStorageTypes) storage |= name == t.name;
      if (!storage) {
        throw Error(where_ + ": refusing pickle global '" + printable(g->s) + "' at byte " + std::to_string(op_pos_) +
                    " (only torch state dicts are accepted)");
      }
      g->callable = Callable::StorageType;
      g->storage_type = name;
    }
    return g;
  }

  void push(VP v) {
    if (stack_.size() >= kMaxStack) fail("pickle stack deeper than " + std::to_string(kMaxStack), "a small state dict pickle");
    stack_.push_back(std::move(v));
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  VP pop() {
    if (stack_.size() <= floor()) fail("pop from an empty pickle stack", "an operand");
    VP v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  VP& top() {
    if (stack_.size() <= floor()) fail("an empty pickle stack", "an operand");
    return stack_.back();
  }
  std::vector<VP> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop to", "a preceding MARK");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<VP> out(stack_.begin() + long(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  void memo_put(uint32_t idx) {
    if (memo_.size() >= kMaxMemo && !memo_.count(idx)) fail("more than " + std::to_string(kMaxMemo) + " memo entries", "fewer");
    memo_[idx] = top();
  }
  void memo_get(uint32_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo entry " + std::to_string(idx) + " read before it was stored", "a stored memo index");
    push(it->second);
  }

  void set_items(VP& dct, const std::vector<VP>& kv) {
    if (dct->kind != Kind::Dict) fail("SETITEM(S) on a " + std::string(kind_name(dct->kind)), "a dict");
    if (kv.size() % 2) fail("SETITEMS with an odd number of items", "key/value pairs");
    for (size_t k = 0; k < kv.size(); k += 2) {
      if (kv[k]->kind == Kind::Str) {  // Python semantics: a repeated key replaces the value in place
        auto [it, fresh] = dct->str_index.emplace(kv[k]->s, dct->dict.size());
        if (!fresh) { dct->dict[it->second].second = kv[k + 1]; continue; }
      }
      dct->dict.emplace_back(kv[k], kv[k + 1]);
    }
  }

  int64_t need_int(const VP& v, const char* what) const {
    if (v->kind != Kind::Int) fail(std::string(what) + " is a " + kind_name(v->kind), "an int");
    return v->i;
  }

  // ('storage', <Type>Storage, key, location, numel)
  VP persistent_load(const VP& pid) {
    if (pid->kind != Kind::Tuple || pid->items.size() != 5 || pid->items[0]->kind != Kind::Str ||
        pid->items[0]->s != "storage")
      fail("persistent id that is not a ('storage', type, key, location, numel) tuple",
           "torch's storage persistent id");
    const VP& type = pid->items[1];
    if (type->kind != Kind::Global || type->callable != Callable::StorageType)
      fail("persistent id storage type that is a " + std::string(kind_name(type->kind)), "torch.<Type>Storage");
    if (pid->items[2]->kind != Kind::Str) fail("persistent id storage key that is a " + std::string(kind_name(pid->items[2]->kind)), "a string");
    if (pid->items[3]->kind != Kind::Str) fail("persistent id location that is a " + std::string(kind_name(pid->items[3]->kind)), "a string");
    int64_t numel = need_int(pid->items[4], "persistent id numel");
    if (numel < 0) fail("storage numel " + std::to_string(numel), "a non-negative count");
    VP s = make(Kind::Storage);
    s->s = pid->items[2]->s;
    s->storage_type = type->storage_type;
    s->numel = numel;
    return s;
  }

  std::vector<int64_t> int_tuple(const VP& v, const char* what) const {
    if (v->kind != Kind::Tuple) fail(std::string(what) + " is a " + kind_name(v->kind), "a tuple of ints");
    if (v->items.size() > size_t(kMaxDims))
      fail(std::string(what) + " has " + std::to_string(v->items.size()) + " dimensions", "at most " + std::to_string(kMaxDims));
    std::vector<int64_t> out;
    for (const VP& x : v->items) {
      int64_t i = need_int(x, what);
      if (i < 0) fail(std::string(what) + " has a negative entry " + std::to_string(i), "non-negative sizes and strides");
      out.push_back(i);
    }
    return out;
  }

  VP reduce(const VP& fn, const VP& args) {
    if (fn->kind != Kind::Global) fail("REDUCE of a " + std::string(kind_name(fn->kind)), "an allowed torch function");
    if (args->kind != Kind::Tuple) fail("REDUCE arguments that are a " + std::string(kind_name(args->kind)), "a tuple");
    const auto& a = args->items;
    switch (fn->callable) {
      case Callable::OrderedDict:
        if (!a.empty()) fail("collections.OrderedDict called with arguments", "OrderedDict()");
        return make(Kind::Dict);
      case Callable::RebuildTensorV2: {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (a.size() != 6 && a.size() != 7)
          fail("_rebuild_tensor_v2 with " + std::to_string(a.size()) + " arguments", "6 or 7");
        if (a[0]->kind != Kind::Storage) fail("_rebuild_tensor_v2 storage that is a " + std::string(kind_name(a[0]->kind)), "a storage");
        auto rec = std::make_shared<TorchTensorRecord>();
        rec->storage_key = a[0]->s;
        rec->storage_type = a[0]->storage_type;
        rec->storage_numel = a[0]->numel;
        rec->dtype_supported = torch_storage_dtype(rec->storage_type, rec->dtype);
        rec->offset = need_int(a[1], "storage offset");
        if (rec->offset < 0) fail("negative storage offset " + std::to_string(rec->offset), "a non-negative offset");
        rec->shape = int_tuple(a[2], "tensor size");
        rec->stride = int_tuple(a[3], "tensor stride");
        if (rec->shape.size() != rec->stride.size())
          fail("tensor size of " + std::to_string(rec->shape.size()) + " dimensions with a stride of " +
                   std::to_string(rec->stride.size()), "equal lengths");
        if (a[5]->kind != Kind::Dict || !a[5]->dict.empty())
          fail("_rebuild_tensor_v2 with backward hooks", "an empty OrderedDict");
        VP t = make(Kind::Tensor);
        t->tensor = std::move(rec);
        return t;
      }
      case Callable::RebuildParameter:  // (data, requires_grad, backward_hooks): the data tensor
        if (a.size() != 3 || a[0]->kind != Kind::Tensor) fail("_rebuild_parameter with unexpected arguments", "(tensor, bool, hooks)");
        return a[0];
      case Callable::StorageType:
        fail("call of torch." + fn->storage_type, "a storage only as a persistent id type");
    }
    fail("REDUCE", "an allowed torch function");
  }

  const uint8_t* d_;
  size_t n_;
  std::string where_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<VP> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, VP> memo_;
};

// Python's repr(float): the shortest round-trip digits, fixed notation for
// exponents -4..15 (always with a ".0" or fraction), scientific otherwise.
std::string python_float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  char b[64];
  auto sci = std::to_chars(b, b + sizeof b, x, std::chars_format::scientific);
  std::string s(b, sci.ptr);
  int exp = std::atoi(s.c_str() + s.find('e') + 1);
  if (exp < -4 || exp >= 16) return s;  // "1e-05", "1e+16" as Python writes them
  auto fix = std::to_chars(b, b + sizeof b, x, std::chars_format::fixed);
  std::string f(b, fix.ptr);
  if (f.find('.') == std::string::npos) f += ".0";
  return f;
}

std::string scalar_string(const Value& v) {
  switch (v.kind) {
    case Kind::Str: return v.s;
    case Kind::Int: return std::to_string(v.i);
    case Kind::Bool: return v.i ? "True" : "False";
    case Kind::None: return "None";
    case Kind::Float: return python_float_repr(v.f);
    default: return "";
  }
}

}  // namespace

bool torch_storage_dtype(const std::string& storage_type, DType& out) {
  for (const auto& t : kStorageTypes)
    if (storage_type == t.name) {
      out = t.dtype;
      return t.supported;
    }
  return false;
}

TorchStateDict parse_torch_pickle(const uint8_t* data, size_t size, const std::string& where) {
  Unpickler up(data, size, where);
  VP root = up.run();
  if (root->kind != Kind::Dict)
    throw Error(where + ": the pickle holds a " + kind_name(root->kind) + ", expected a dict of tensors (a state dict)");
  TorchStateDict out;
  for (size_t k = 0; k < root->dict.size(); ++k) {
    const auto& [key, val] = root->dict[k];
    if (key->kind != Kind::Str)
      throw Error(where + ": key " + std::to_string(k) + " of the state dict is a " + kind_name(key->kind) + ", expected a string");
    switch (val->kind) {
      case Kind::Tensor: out.tensors.emplace_back(key->s, *val->tensor); break;
      case Kind::Str: case Kind::Int: case Kind::Float: case Kind::Bool: case Kind::None:
        out.metadata.emplace_back(key->s, scalar_string(*val));
        break;
      case Kind::Dict:
        throw Error(where + ": entry '" + printable(key->s) + "' is a nested dict (a training checkpoint?), expected a flat " +
                    "dict of tensors; save its state dict instead (torch.save(ckpt['" + printable(key->s) + "'], f))");
      default:
        throw Error(where + ": entry '" + printable(key->s) + "' is a " + kind_name(val->kind) +
                    ", expected a tensor or a str/int/float value");
    }
  }
  return out;
}

}  // namespace corvid
