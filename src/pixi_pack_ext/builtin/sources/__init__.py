"""Built-in channel sources."""
