import ESPCore

extension EFuseSummary {
    /// What `espforge efuse summary` prints: chip line, every field with its protection (R/W),
    /// then the security state (ends with a newline). Key material appears only if the summary
    /// was made with `revealKeys`.
    public var text: String {
        func yn(_ b: Bool) -> String { b ? "yes" : "no" }
        func list(_ bits: [Int]) -> String { bits.isEmpty ? "none" : bits.map(String.init).joined(separator: ", ") }
        var lines = ["Chip: \(chip.uppercased()) revision \(revision), package \(package), MAC \(mac) (CRC \(macCRCValid ? "OK" : "INVALID"))", ""]
        for f in fields {
            let perms = (f.readable ? "R" : "-") + "/" + (f.writeable ? "W" : "-")
            let name = String("\(f.name) (BLOCK\(f.block))".prefix(30))
            lines.append(name + String(repeating: " ", count: 30 - name.count) + " \(perms)  \(f.value)")
        }
        let sec = security
        lines += ["", "Security:",
                  "  Secure Boot V2 digest in BLOCK2: " + (sec.secureBootDigest ?? (sec.blk2ReadProtected ? "unreadable (read-protected)" : "none"))
                      + (sec.blk2WriteProtected ? " (write-protected)" : ""),
                  "  ABS_DONE_1 (Secure Boot V2): \(yn(sec.absDone1))\(sec.absDone1 && !sec.secureBootV2Enabled ? " (ignored: revision < v3.0)" : "");  ABS_DONE_0 (V1): \(yn(sec.absDone0))",
                  "  FLASH_CRYPT_CNT: \(NumberParsing.hex(sec.flashCryptCnt, width: 2)) -> flash encryption \(sec.flashEncryptionEnabled ? "ON" : "off")"
                      + "; key in BLOCK1: \(sec.flashEncryptionKeyPresent ? "present" : "none")\(sec.blk1ReadProtected ? " (read-protected)" : "")",
                  "  FLASH_CRYPT_CONFIG: " + (sec.flashCryptConfig.map { NumberParsing.hex($0, width: 1) } ?? "hidden (RD_DIS bit 3)"),
                  "  DISABLE_DL_ENCRYPT \(yn(sec.disableDLEncrypt)), DISABLE_DL_DECRYPT \(yn(sec.disableDLDecrypt)), DISABLE_DL_CACHE \(yn(sec.disableDLCache))",
                  "  JTAG disabled \(yn(sec.jtagDisabled)), console debug disabled \(yn(sec.consoleDebugDisabled)), UART download disabled \(yn(sec.uartDownloadDisabled))",
                  "  coding scheme: \(sec.codingScheme ?? "hidden (RD_DIS bit 3)")",
                  "  write-protected (WR_DIS bits): " + list(sec.writeProtectedBits),
                  "  read-protected (RD_DIS bits): " + list(sec.readProtectedBits)]
        if decodeErrors { lines.append("WARNING: EFUSE_DEC_STATUS reports 3/4 coding errors") }
        return lines.joined(separator: "\n") + "\n"
    }

    public func json() throws -> String { try JSONText.render(self) }
}

extension EFuseBurnReport {
    /// The read-back of a burn, one line each: how many program cycles, then OK/FAIL per change,
    /// per protection bit, for coding errors and for stray bits. Never shows key material.
    public var readBackLines: [String] {
        var lines = ["burned in \(programCycles) program cycle\(programCycles == 1 ? "" : "s"); read back:"]
        for c in changes {
            lines.append("  \(c.stuck ? "OK  " : "FAIL") \(c.name)" + (c.stuck ? "" : " (\(c.missingBits) of \(c.bits) bits did not stick)"))
        }
        for p in protections { lines.append("  \(p.stuck ? "OK  " : "FAIL") \(p.kind == .write ? "WR_DIS" : "RD_DIS") bit \(p.bit)") }
        if decodeErrors { lines.append("  FAIL EFUSE_DEC_STATUS reports coding errors") }
        for (block, n) in strayBits.sorted(by: { $0.key < $1.key }) {
            lines.append("  FAIL BLOCK\(block): \(n) bit\(n == 1 ? "" : "s") read back as 1 that neither the chip had nor the plan asked for")
        }
        return lines
    }
}

extension EFuseBurnRequest {
    /// Field burns from `NAME=VALUE` texts (at least one); anything else is a usage error.
    public static func fields(_ assignments: [String]) throws -> [EFuseBurnRequest] {
        let requests = try assignments.map { a -> EFuseBurnRequest in
            guard let eq = a.firstIndex(of: "="), eq != a.startIndex else {
                throw UsageError("'\(a)' is not NAME=VALUE", hint: "e.g. JTAG_DISABLE=1")
            }
            return .field(name: String(a[..<eq]), value: String(a[a.index(after: eq)...]))
        }
        guard !requests.isEmpty else { throw UsageError("nothing to burn", hint: "give NAME=VALUE pairs, e.g. JTAG_DISABLE=1") }
        return requests
    }

    /// The key burn for `purpose` (flash_encryption or block1; a Secure Boot V2 purpose is
    /// refused: BLOCK2 takes a digest) from the key file at `keyFile`.
    public static func key(purpose: String, keyFile: String, protect: Bool) throws -> EFuseBurnRequest {
        switch purpose.lowercased() {
        case "flash_encryption", "block1": break
        case "secure_boot_v2", "block2":
            throw UsageError("Secure Boot V2 stores a public-key digest, not a key", hint: "use `espforge efuse burn-key-digest --key KEY.pem`")
        default:
            throw UsageError("unknown key purpose '\(purpose)'", hint: "use flash_encryption (BLOCK1)")
        }
        return .flashEncryptionKey(try BoundedFile.read(keyFile, limit: .key), protect: protect)
    }
}
