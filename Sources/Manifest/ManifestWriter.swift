import ESPCore

extension Manifest {
    /// The manifest as annotated `espforge.toml` text; `Manifest.parse(m.toml())` gives `m` back.
    public func toml(header: [String] = []) -> String {
        var out: [String] = []
        for h in header { out.append("# " + h) }
        if !header.isEmpty { out.append("") }
        out.append("version = \(version)")
        out.append("")
        out.append("[chip]")
        out.append("type = \(quote(chip.type))")
        if let r = chip.minRevision { out.append("min_revision = \(r)          # lowest accepted chip revision") }
        out.append("flash_size = \(quote(Self.sizeText(chip.flashSize)))")
        if let m = chip.flashMode { out.append("flash_mode = \(quote(m))") }
        if let f = chip.flashFreq { out.append("flash_freq = \(quote(f))") }
        if let buildDir {
            out.append("")
            out.append("# ESP-IDF build directory: images not listed below come from its flasher_args.json.")
            out.append("[build]")
            out.append("dir = \(quote(buildDir))")
        }
        for (name, image) in images.all {
            out.append("")
            out.append("[images.\(name)]")
            out.append("file = \(quote(image.path))")
            out.append("offset = \(NumberParsing.hex(image.offset, width: 0))")
        }
        if let partitionsCSV {
            out.append("")
            out.append("[partitions]")
            out.append("csv = \(quote(partitionsCSV))      # source of the partition table (for checks and NVS placement)")
        }
        if let signing {
            out.append("")
            out.append("# Secure Boot V2: exactly one of key / external signatures / presigned.")
            out.append("[signing]")
            switch signing {
            case .key(let path):
                out.append("key = \(quote(path))")
                if let m = pkcs11.module { out.append("pkcs11_module = \(quote(m))") }
                if let f = pkcs11.pinFile { out.append("pkcs11_pin_file = \(quote(f))   # mode 0600") }
            case .presigned: out.append("presigned = true          # the images already carry their signature blocks")
            case .external(let pub, let b, let a):
                out.append("public_key = \(quote(pub))")
                out.append("bootloader_signature = \(quote(b))")
                out.append("app_signature = \(quote(a))")
            }
        }
        if let escrowPublicKey {
            out.append("")
            out.append("# Per-device keys are sealed to this public key before use (the private half stays offline).")
            out.append("[escrow]")
            out.append("public_key = \(quote(escrowPublicKey))")
        }
        out.append("")
        out.append("[flash_encryption]")
        out.append("mode = \(quote(flashEncryption.mode.rawValue))   # host | on-chip | none")
        out.append("release = \(flashEncryption.release)")
        if let nvs {
            out.append("")
            out.append("[nvs]")
            out.append("config = \(quote(nvs.config))")
            out.append("values = \(quote(nvs.values))   # one row per device: the identity pool")
            out.append("partition = \(quote(nvs.partition))")
            out.append("encrypt = \(nvs.encrypt)")
            if let k = nvs.keysPartition { out.append("keys_partition = \(quote(k))") }
        }
        out.append("")
        out.append("# Burned last, after the device booted and its security state was verified.")
        out.append("[efuse]")
        out.append("burn = [" + efuse.burn.map(quote).joined(separator: ", ") + "]")
        out.append("write_protect = [" + efuse.writeProtect.map(quote).joined(separator: ", ") + "]")
        out.append("")
        out.append("[registry]")
        if let url = registry.url {
            out.append("url = \(quote(url))   # a file, sqlite:PATH or postgres://user:pass@host:5432/db")
        } else {
            out.append("# url = \"espforge-registry.sqlite\"   # the default; or postgres://user:pass@host:5432/db")
        }
        if let s = registry.station { out.append("station = \(quote(s))") }
        out.append("")
        out.append("[first_boot]")
        if let l = firstBoot.readyLine { out.append("ready_line = \(quote(l))") }
        out.append("timeout = \(firstBoot.timeout)")
        return out.joined(separator: "\n") + "\n"
    }

    static func sizeText(_ size: Int) -> String {
        size % (1 << 20) == 0 ? "\(size >> 20)MB" : size % 1024 == 0 ? "\(size >> 10)KB" : "\(size)"
    }
}

/// A TOML basic string literal.
func quote(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if u.value < 0x20 || u.value == 0x7F {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}
