// Placeholder: being written.
#include "commands.h"
namespace tagcache::tagctl {
int RunLoad(const Invocation&) { return 1; }
}  // namespace tagcache::tagctl
