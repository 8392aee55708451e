// The libFuzzer driver: `espforge-fuzz TARGET [libFuzzer options] [CORPUS…]`.
// Built only by ./scripts/fuzz (ESPFORGE_FUZZ=1, -sanitize=fuzzer,address); see docs/fuzzing.md.
//   espforge-fuzz --list                 names, max lengths and summaries of the targets
//   espforge-fuzz --write-seeds DIR      generated seeds as DIR/TARGET/gen-N
//   espforge-fuzz TARGET …               fuzz TARGET (the remaining arguments go to libFuzzer)
import Foundation
import FuzzTargets

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// The target chosen on the command line (set once, before libFuzzer starts).
nonisolated(unsafe) var selected: FuzzTarget?

func warn(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

@main
struct FuzzDriver {
    static func main() {
        let args = CommandLine.arguments
        var firstLibFuzzerArgument = 2
        guard args.count >= 2 else { usage() }
        switch args[1] {
        case "--list":
            for t in FuzzTargets.all { print("\(t.name)\t\(t.maxLength)\t\(t.summary)") }
            exit(0)
        case "--write-seeds":
            guard args.count == 3 else { usage() }
            for t in FuzzTargets.all {
                do { try t.writeGeneratedSeeds(to: args[2] + "/" + t.name) } catch {
                    warn("espforge-fuzz: cannot write seeds for \(t.name): \(error)\n")
                    exit(1)
                }
            }
            exit(0)
        default:
            // libFuzzer runs itself again for -minimize_crash (and -fork) with the arguments it was
            // given, i.e. without the target name: the name travels in ESPFORGE_FUZZ_TARGET.
            let inherited = ProcessInfo.processInfo.environment["ESPFORGE_FUZZ_TARGET"]
            let name = args[1].hasPrefix("-") ? (inherited ?? args[1]) : args[1]
            guard let target = FuzzTargets.named(name) else {
                warn("espforge-fuzz: unknown target '\(name)'; --list shows them\n")
                exit(2)
            }
            selected = target
            setenv("ESPFORGE_FUZZ_TARGET", target.name, 1)
            firstLibFuzzerArgument = args[1].hasPrefix("-") ? 1 : 2
        }
        // libFuzzer sees argv without the target name.
        var kept: [UnsafeMutablePointer<CChar>?] = [CommandLine.unsafeArgv[0]]
        for i in firstLibFuzzerArgument..<Int(CommandLine.argc) { kept.append(CommandLine.unsafeArgv[i]) }
        kept.append(nil)
        var argc = CInt(kept.count - 1)
        let status = kept.withUnsafeMutableBufferPointer { buffer -> CInt in
            var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
            return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                guard let target = selected else { return 0 }
                let input = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size))
                if case let .untypedError(what) = target.run(input) {
                    // Errors are typed per domain and rendered as diagnostics; anything else is a bug.
                    warn("espforge-fuzz: \(target.name): untyped error: \(what)\n")
                    abort()
                }
                return 0
            }
        }
        exit(status)
    }

    static func usage() -> Never {
        warn("usage: espforge-fuzz TARGET [libFuzzer options] [CORPUS…] | --list | --write-seeds DIR\n")
        exit(2)
    }
}
