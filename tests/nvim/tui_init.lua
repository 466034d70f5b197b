-- A user's init.lua for the Neovim screen test: the README's setup, with diagnostics
-- shown as virtual text (off by default since Neovim 0.11) and line numbers.
vim.opt.runtimepath:prepend(vim.env.NVIM_TEST_CLIENT_DIR)
vim.lsp.config('hearth', { cmd = vim.json.decode(vim.env.NVIM_TEST_CMD) })
vim.lsp.enable('hearth')
vim.diagnostic.config({ virtual_text = true })
vim.o.number = true
vim.o.signcolumn = 'yes'
vim.o.shortmess = vim.o.shortmess .. 'I'
vim.o.swapfile = false
