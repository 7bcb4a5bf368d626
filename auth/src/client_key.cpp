// Client key generation and assertion signing (see client_key.h). STUB until implemented.
#include "telehub/auth/client_key.h"

namespace telehub::auth {

Result<ClientKey> generate_client_key(ClientKeyType) {
  return core::fail(core::Code::kUnimplemented, "crypto", "not implemented yet");
}
Result<ClientKey> client_key_from_pem(std::string_view) {
  return core::fail(core::Code::kUnimplemented, "crypto", "not implemented yet");
}
Result<std::string> sign_assertion(std::string_view, const AssertionClaims&, core::TimePoint) {
  return core::fail(core::Code::kUnimplemented, "crypto", "not implemented yet");
}

}  // namespace telehub::auth
