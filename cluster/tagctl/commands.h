// Runs one tagctl command against the cluster through the client library.
#pragma once

#include "invocation.h"
#include "report.h"
#include "tagcache/common/status.h"

namespace tagcache::tagctl {

// Connects to invocation.seeds and runs the command. The error is the
// node's (or the client's) status; tagctl prints it and exits 1.
Result<Report> Execute(const Invocation& invocation);

// The long-running commands print their own progress and summary and
// return the process exit code (0 success, 1 failure; docs/CLI.md).
int RunLoad(const Invocation& invocation);    // load_command.cc
int RunStream(const Invocation& invocation);  // stream_command.cc
int RunCluster(const Invocation& invocation);  // cluster_command.cc

}  // namespace tagcache::tagctl
