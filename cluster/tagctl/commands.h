// Runs one tagctl command against the cluster through the client library.
#pragma once

#include "invocation.h"
#include "report.h"
#include "tagcache/common/status.h"

namespace tagcache::tagctl {

// Connects to invocation.seeds and runs the command. The error is the
// node's (or the client's) status; tagctl prints it and exits 1.
Result<Report> Execute(const Invocation& invocation);

}  // namespace tagcache::tagctl
