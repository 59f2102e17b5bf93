/* cli/cli.h — the coretune sub-commands; each takes argv from the sub-command name on and returns
 * the process exit code (0 ok, 1 failed, 2 usage). */
#ifndef CT_CLI_H
#define CT_CLI_H

int cli_train(int argc, char **argv);

#endif
