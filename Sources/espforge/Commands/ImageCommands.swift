import ArgumentParser

struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Build, inspect and retarget ESP firmware images.",
        subcommands: []
    )
}
