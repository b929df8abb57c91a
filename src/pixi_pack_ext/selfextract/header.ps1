# pixi-pack-ext self-extracting environment: run it (powershell -ExecutionPolicy Bypass -File environment.ps1 -h).
# The pack (a tar) and its unpacker follow this script inside one block comment at the offsets
# below ('#' is written '#~' where it precedes '>' or '~', so the comment cannot end early). The
# stored unpacker (from PIXI_PACK_UNPACKER_CHECK_OFFSET on, here its start) is checked against
# PIXI_PACK_UNPACKER_SHA256 before it runs, the stored pack against PIXI_PACK_ARCHIVE_SHA256
# before anything is installed (by the bundled unpacker itself).
# pixi-pack.json: @METADATA@
$PIXI_PACK_HEADER_SIZE = @HEADER_SIZE@
$PIXI_PACK_UNPACKER_OFFSET = @UNPACKER_OFFSET@
$PIXI_PACK_UNPACKER_SIZE = @UNPACKER_SIZE@
$PIXI_PACK_UNPACKER_CHECK_OFFSET = @UNPACKER_CHECK_OFFSET@
$PIXI_PACK_ARCHIVE_OFFSET = @ARCHIVE_OFFSET@
$PIXI_PACK_ARCHIVE_SIZE = @ARCHIVE_SIZE@
$PIXI_PACK_UNPACKER_SHA256 = '@UNPACKER_SHA256@'
$PIXI_PACK_ARCHIVE_SHA256 = '@ARCHIVE_SHA256@'
$PIXI_PACK_UNPACKER = '@UNPACKER_KIND@'
$PIXI_PACK_PLATFORM = '@PLATFORM@'
$PIXI_PACK_ENVIRONMENTS = '@ENVIRONMENTS@'
$PIXI_PACK_FILE_SIZE = @FILE_SIZE@

$ErrorActionPreference = 'Stop'
$scriptArgs = @($args)
$self = if ($PSCommandPath) { $PSCommandPath } else { $MyInvocation.MyCommand.Path }
$name = Split-Path -Leaf $self
$quiet = $false

function Fail([string]$Message) {
    [Console]::Error.WriteLine("${name}: error: $Message")
    exit 1
}

function Say([string]$Message) {
    if (-not $quiet) { [Console]::Error.WriteLine($Message) }
}

$what = "Install the packed $PIXI_PACK_PLATFORM environment (like pixi-unpack on the pack's tar)."
$choices = ''
if ($PIXI_PACK_ENVIRONMENTS) {
    $what = "Install one or all of the packed $PIXI_PACK_PLATFORM environments (like pixi-unpack on the pack's tar):" +
        "`n$($PIXI_PACK_ENVIRONMENTS -replace ',', ', ')."
    $choices = "`n  --environment NAME          Install this environment of the pack (required unless --all)" +
        "`n  --all                       Install each environment into a folder of its name (activation script: activate-NAME)"
}
$usage = @"
Usage: $name [OPTIONS]

$what

Options:$choices
  -o, --output-directory DIR  Folder that receives the environment and the activation script [default: .]
  -e, --env-name NAME         Name of the environment folder [default: env]
  -s, --shell SHELL           Shell of the activation script: bash, zsh, fish, xonsh, powershell, cmd, nushell
  --force                     Replace an existing environment folder and activation script
  --ignore-virtual-packages   Install even if the host lacks glibc/cuda/... versions
  --compile-bytecode          Compile the PyPI wheels' bytecode (runs the packed python)
  -v, --verbose / -q, --quiet More / less output
  -h, --help                  Show this message and exit

Environment: TEMP (where temporary files go), PIXI_UNPACK_PYTHON (the python to use),
PIXI_UNPACK_CACHE_DIR (where the unpacker keeps its libraries between runs; empty: nowhere).
"@

foreach ($arg in $scriptArgs) {
    if ($arg -eq '-h' -or $arg -eq '--help') { Write-Output $usage; exit 0 }
    if ($arg -eq '-q' -or $arg -eq '--quiet') { $quiet = $true }
}

$onWindows = ($PSVersionTable.PSEdition -ne 'Core') -or $IsWindows
if ($onWindows) {
    $arch = if ($env:PROCESSOR_ARCHITEW6432) { $env:PROCESSOR_ARCHITEW6432 } else { $env:PROCESSOR_ARCHITECTURE }
    $hostPlatform = switch ($arch) { 'AMD64' { 'win-64' } 'ARM64' { 'win-arm64' } 'x86' { 'win-32' } default { '' } }
    if ($hostPlatform -and $hostPlatform -ne $PIXI_PACK_PLATFORM) {
        Fail "this pack was made for $PIXI_PACK_PLATFORM but this machine is $hostPlatform; make a pack for this machine with 'pixi-pack -p $hostPlatform'"
    }
}

$actualSize = (Get-Item -LiteralPath $self).Length
if ($actualSize -ne $PIXI_PACK_FILE_SIZE) {
    Fail "'$self' has $actualSize bytes where $PIXI_PACK_FILE_SIZE were written: it is truncated or damaged; copy it again"
}

function Find-Python {
    $ErrorActionPreference = 'Continue'  # a candidate that writes to stderr is skipped, not fatal
    $candidates = @()
    if ($env:PIXI_UNPACK_PYTHON) { $candidates += , @($env:PIXI_UNPACK_PYTHON) }
    $candidates += , @('py', '-3')
    $candidates += , @('python')
    $candidates += , @('python3')
    foreach ($candidate in $candidates) {
        if (-not (Get-Command $candidate[0] -ErrorAction SilentlyContinue)) { continue }
        $rest = @($candidate | Select-Object -Skip 1)
        try {
            & $candidate[0] @rest -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>$null | Out-Null
        } catch {
            continue
        }
        if ($LASTEXITCODE -eq 0) { return , $candidate }
    }
    return $null
}

$python = $null
if ($PIXI_PACK_UNPACKER -eq 'python') {
    $python = Find-Python
    if (-not $python) {
        Fail "unpacking needs Python >= 3.10 (py -3, python or PIXI_UNPACK_PYTHON); none was found"
    }
}

# The sha256 of LENGTH stored bytes at OFFSET.
function Get-RegionSha256([long]$Offset, [long]$Length) {
    $stream = [System.IO.File]::OpenRead($self)
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try {
        [void]$stream.Seek($Offset, [System.IO.SeekOrigin]::Begin)
        [long]$left = $Length
        $buffer = New-Object byte[] 1048576
        while ($left -gt 0) {
            $read = $stream.Read($buffer, 0, [int][Math]::Min([long]$buffer.Length, $left))
            if ($read -le 0) { Fail "'$self' ends early; copy it again" }
            [void]$sha.TransformBlock($buffer, 0, $read, $null, 0)
            $left -= $read
        }
        [void]$sha.TransformFinalBlock($buffer, 0, 0)
        return ([System.BitConverter]::ToString($sha.Hash) -replace '-', '').ToLowerInvariant()
    } finally {
        $stream.Dispose()
        $sha.Dispose()
    }
}

# Copy LENGTH stored bytes at OFFSET to TARGET, turning every '#~' back into '#', 1 MiB at a time.
function Copy-Region([long]$Offset, [long]$Length, [string]$Target) {
    $latin1 = [System.Text.Encoding]::GetEncoding(28591)
    $in = [System.IO.File]::OpenRead($self)
    $out = [System.IO.File]::Create($Target)
    try {
        [void]$in.Seek($Offset, [System.IO.SeekOrigin]::Begin)
        $buffer = New-Object byte[] 1048576
        $carry = 0
        $left = $Length
        while ($left -gt 0) {
            $want = [int][Math]::Min([long]($buffer.Length - $carry), $left)
            $read = $in.Read($buffer, $carry, $want)
            if ($read -le 0) { Fail "'$self' ends early; copy it again" }
            $left -= $read
            $n = $carry + $read
            $carry = 0
            if ($left -gt 0 -and $buffer[$n - 1] -eq 35) { $n -= 1; $carry = 1 }
            $text = $latin1.GetString($buffer, 0, $n)
            $start = 0
            while ($true) {
                $i = $text.IndexOf('#~', $start, [System.StringComparison]::Ordinal)
                if ($i -lt 0) { break }
                $out.Write($buffer, $start, $i + 1 - $start)
                $start = $i + 2
            }
            $out.Write($buffer, $start, $n - $start)
            if ($carry -eq 1) { $buffer[0] = 35 }
        }
    } finally {
        $in.Dispose()
        $out.Dispose()
    }
}

function Assert-Region([string]$Part, [long]$Offset, [long]$Length, [string]$Expected) {
    $actual = Get-RegionSha256 $Offset $Length
    if ($actual -ne $Expected) {
        Fail "'$self' is corrupt ($Part sha256 $actual, expected $Expected); nothing was installed"
    }
}

Say "checking the sha256 of $name ..."
$unpackerEnd = $PIXI_PACK_UNPACKER_OFFSET + $PIXI_PACK_UNPACKER_SIZE
Assert-Region 'unpacker' $PIXI_PACK_UNPACKER_CHECK_OFFSET ($unpackerEnd - $PIXI_PACK_UNPACKER_CHECK_OFFSET) $PIXI_PACK_UNPACKER_SHA256
if ($PIXI_PACK_UNPACKER -ne 'python') {
    # The bundled unpacker checks the pack itself as it reads it; another one cannot.
    Assert-Region 'archive' $PIXI_PACK_ARCHIVE_OFFSET $PIXI_PACK_ARCHIVE_SIZE $PIXI_PACK_ARCHIVE_SHA256
}

$tmp = Join-Path ([System.IO.Path]::GetTempPath()) ('pixi-unpack-' + [System.Guid]::NewGuid())
[void](New-Item -ItemType Directory -Path $tmp)
$status = 1
try {
    if ($PIXI_PACK_UNPACKER -eq 'python') {
        # The unpacker reads the pack straight from this file (no copy), checking its sha256.
        $unpacker = Join-Path $tmp 'pixi-unpack.pyz'
        Copy-Region $PIXI_PACK_UNPACKER_OFFSET $PIXI_PACK_UNPACKER_SIZE $unpacker
        $env:PIXI_UNPACK_LIB_DIR = Join-Path $tmp 'lib'
        $rest = @($python | Select-Object -Skip 1)
        & $python[0] @rest $unpacker @scriptArgs $self
        $status = $LASTEXITCODE
    } else {
        $unpacker = Join-Path $tmp 'pixi-unpack.exe'
        $archive = Join-Path $tmp 'environment.tar'
        Copy-Region $PIXI_PACK_UNPACKER_OFFSET $PIXI_PACK_UNPACKER_SIZE $unpacker
        Copy-Region $PIXI_PACK_ARCHIVE_OFFSET $PIXI_PACK_ARCHIVE_SIZE $archive
        & $unpacker @scriptArgs $archive
        $status = $LASTEXITCODE
    }
} finally {
    Remove-Item -LiteralPath $tmp -Recurse -Force -ErrorAction SilentlyContinue
}
exit $status
