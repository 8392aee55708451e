import ArgumentParser

struct NVSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nvs",
        abstract: "Generate, encrypt and inspect NVS partitions.",
        subcommands: []
    )
}
