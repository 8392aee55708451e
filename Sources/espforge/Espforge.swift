import ArgumentParser
import ESPCore

/// The root command. Each command group lives in `Commands/` in a file of its own.
struct Espforge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "espforge", abstract: "Turn an ESP-IDF build into secured ESP32 devices, byte-exact and without surprises.",
        discussion: """
            espforge builds and inspects firmware images, signs them for Secure Boot V2, encrypts \
            flash contents on the host, builds partition tables and (encrypted) NVS images. Every \
            format it writes is byte-identical to Espressif's reference tools.
            """,
        version: "0.1.0",
        subcommands: [
            ImageCommand.self,
            SecureBootCommand.self,
            FlashEncryptionCommand.self,
            PartitionsCommand.self,
            OtadataCommand.self,
            NVSCommand.self,
            DeviceCommand.self,
            EFuseCommand.self,
            PreflightCommand.self,
            DoctorCommand.self,
            InitCommand.self,
            RegistryCommand.self,
            ChipCommand.self,
            FlashCommand.self,
            ProvisionCommand.self,
            StationCommand.self,
            DemoCommand.self,
            SoakAuditCommand.self,
        ]
    )
}

@main
enum Main {
    static func main() async {
        do {
            var command = try Espforge.parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as DiagnosticConvertible {
            ErrorRenderer.report(error)
            Espforge.exit(withError: ExitCode(1))
        } catch {
            Espforge.exit(withError: error)
        }
    }
}
