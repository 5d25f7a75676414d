#!/bin/sh
mkdir -p /www
echo "hello from the web container" > /www/index.html
exec httpd -f -p 80 -h /www
