// adcsc: the connector's single binary. `adcsc --help` lists the subcommands.
#include <iostream>

#include "node/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"adcsc " ADCSC_VERSION
               " - high-availability connector between Jamf Pro and Microsoft ADCS\n\n"
               "Examples:\n"
               "  adcsc pki init --fqdn adcsc.example.com --jamf-pro-dn jamf.example.com --out /etc/adcsc/pki\n"
               "  adcsc node --config /etc/adcsc/node.toml\n"
               "  adcsc client request --url https://adcsc.example.com:8443 --pfx client-cert.pfx \\\n"
               "      --password-file pfx.pass --server-ca adcs-proxy-ca.pem --dc ca1.example.com --ca Example-CA \\\n"
               "      --template JamfDevice --subject device-42\n"
               "  adcsc ctl ca-ping --config /etc/adcsc/node.toml --dc ca1.example.com --ca Example-CA\n"
               "  adcsc drill --config run/quickstart/drill.toml --scenario kill\n",
               "adcsc"};
  app.set_version_flag("--version", ADCSC_VERSION);
  app.require_subcommand(1);
  int exit_code = adcsc::cli::kExitOk;
  adcsc::cli::AddNodeCommand(app, &exit_code);
  adcsc::cli::AddPkiCommand(app, &exit_code);
  adcsc::cli::AddClientCommand(app, &exit_code);
  adcsc::cli::AddCtlCommand(app, &exit_code);
  adcsc::cli::AddDrillCommand(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : adcsc::cli::kExitUsage;
  }
  return exit_code;
}
