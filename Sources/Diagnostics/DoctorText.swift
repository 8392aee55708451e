import ESPCore

extension DoctorArtifacts {
    /// The files as flashed, for `espforge doctor`: those of the ESP-IDF build folder `buildDir`
    /// (if given), then `pairs` (ADDR FILE, ADDR FILE …, each replacing a build file at the same
    /// address). The chip is `chip`, else the build's, else esp32. Nil when there are no files.
    public static func load(buildDir: String?, pairs: [String], chip: String?) throws -> DoctorArtifacts? {
        var files: [PlanEntry] = []
        var chipName = chip
        if let buildDir {
            let contents = try BuildDirectory.load(buildDir) { path in
                do { return try BoundedFile.read(path, limit: .flashContents) } catch let e as FileAccessError where e.reason == .missing { return nil }
            }
            files = contents.plan.entries
            if chipName == nil { chipName = contents.chip }
        }
        guard pairs.count % 2 == 0 else {
            throw UsageError("ADDR FILE arguments must come in pairs", hint: "e.g. 0x1000 bootloader.bin")
        }
        for i in stride(from: 0, to: pairs.count, by: 2) {
            guard let addr = NumberParsing.integer(pairs[i]), addr >= 0 else {
                throw UsageError("'\(pairs[i])' is not a flash address", hint: "write it as 0x1000 or 4096")
            }
            files.removeAll { $0.address == addr }
            files.append(PlanEntry(address: addr, name: pairs[i + 1], bytes: try BoundedFile.read(pairs[i + 1], limit: .flashContents)))
        }
        guard let spec = ChipSpec.named(chipName ?? "esp32") else {
            throw UsageError("unknown chip '\(chipName ?? "")'", hint: "choose one of: " + ChipSpec.all.map(\.name).joined(separator: ", "))
        }
        return files.isEmpty ? nil : DoctorArtifacts(files: files, chip: spec)
    }
}

extension DoctorReport {
    /// What `espforge doctor` prints: the most likely cause with its evidence, correlation with
    /// the build artifacts, explanation and numbered fix, then the other findings (ends with a newline).
    public var text: String {
        guard let primary else { return "doctor: read \(linesRead) line(s); no known failure pattern found\n" }
        var lines = ["doctor: read \(linesRead) line(s)", "",
                     "most likely cause (\(primary.rule) \(primary.name), confidence \(primary.confidence.rawValue)):",
                     "  \(primary.cause)", "", "evidence:"]
        lines += primary.evidence.map { "  line \($0.number): \($0.text)" }
        if !primary.correlation.isEmpty { lines += ["", "build artifacts:"] + primary.correlation.map { "  \($0)" } }
        lines += ["", "why:", "  " + primary.explanation, "", "fix:"]
        lines += primary.fix.enumerated().map { "  \($0.offset + 1). \($0.element)" }
        let others = findings.dropFirst()
        if !others.isEmpty {
            lines += ["", "also found:"]
            for f in others {
                lines.append("- \(f.rule) \(f.name): \(f.cause)")
                lines += f.evidence.prefix(3).map { "    line \($0.number): \($0.text)" }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `doctor --json`: lines read, the primary finding and every finding.
    public func json() throws -> String {
        struct Output: Encodable {
            var linesRead: Int
            var primary: DoctorFinding?
            var findings: [DoctorFinding]
        }
        return try JSONText.render(Output(linesRead: linesRead, primary: primary, findings: findings))
    }
}
