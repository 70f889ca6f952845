// Placeholder: being written.
#include "commands.h"
namespace tagcache::tagctl {
int RunStream(const Invocation&) { return 1; }
}  // namespace tagcache::tagctl
