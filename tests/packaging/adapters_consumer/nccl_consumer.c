/*
 * An out-of-tree consumer of an installed libalibi_nccl (used by packaging.install_adapters),
 * built through pkg-config alibi-nccl and through find_package(alibi COMPONENTS nccl). It needs
 * no GPU: a NULL communicator is refused, with the adapter's message naming it.
 */
#include <alibi/alibi_nccl.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  alibi_comm_t comm = NULL;
  const alibi_status status = alibi_comm_create_nccl(NULL, NULL, &comm);
  const char* message = alibi_nccl_last_error_message();
  const int ok = status == ALIBI_STATUS_NULL_POINTER && comm == NULL &&
                 strstr(message, "alibi_comm_create_nccl: comm") == message;
  printf("nccl_consumer: libalibi %s, NULL comm: %s (\"%s\"): %s\n", alibi_version_string(),
         alibi_status_string(status), message, ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
